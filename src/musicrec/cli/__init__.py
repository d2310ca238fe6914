"""The command line: the only code that reads argv and the environment."""
