"""Audio commands: ``audio features``."""

from __future__ import annotations

from typing import Optional

import typer

from musicrec import MusicrecError


def register(app: typer.Typer) -> None:
    audio = typer.Typer(no_args_is_help=True, help="Audio files: log-mel spectrograms and summary features.")
    app.add_typer(audio, name="audio")

    @audio.command("features")
    def features(
        directory: str = typer.Argument(..., metavar="DIR", help="folder of audio files (.wav .flac .ogg .mp3 ...), "
                                                                  "searched recursively"),
        out: str = typer.Option(..., "--out", help="output folder: features.parquet, mels.npz, rejects.csv"),
        max_seconds: Optional[float] = typer.Option(30.0, "--max-seconds", min=0.1,
                                                    help="analyse only the first seconds of each file"),
        whole: bool = typer.Option(False, "--whole", help="analyse whole files (overrides --max-seconds)"),
        n_mels: int = typer.Option(64, "--n-mels", min=8, max=256, help="mel bands of the spectrograms"),
    ):
        """Extract log-mel spectrograms and MFCC/chroma/tempo features of every audio file in DIR.

        Files unchanged since the last run into the same --out are not decoded again; unreadable,
        empty or too-short files are listed in rejects.csv with the reason.
        """
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from musicrec.cli.common import fail
        from musicrec.features.audio import AudioConfig, extract_dir

        config = AudioConfig(max_seconds=None if whole else max_seconds, n_mels=n_mels)
        err = Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[file]}", style="dim"))
        try:
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("audio features", total=None, file="")
                report = extract_dir(directory, out, config,
                                     progress=lambda done, total, file: bar.update(task, completed=done, total=total,
                                                                                  file=file[-40:]))
        except MusicrecError as exc:
            fail(str(exc))
        n_rej = len(report.rejects)
        typer.echo(f"files: {report.files:,} ({report.files - report.cached:,} analysed now, "
                   f"{report.cached:,} unchanged since the last run): {report.files - n_rej:,} with features, "
                   f"{n_rej:,} rejected [{report.seconds:.1f} s]")
        typer.echo(f"features: {report.features_path}")
        typer.echo(f"mels: {report.mels_path}")
        if report.rejects:
            typer.echo(f"rejected: {report.rejects_path}")
            for file, reason in report.rejects[:10]:
                typer.echo(f"  {file}: {reason}")
            if len(report.rejects) > 10:
                typer.echo(f"  ... and {len(report.rejects) - 10:,} more")
