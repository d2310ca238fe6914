// musicrec web page: plain JavaScript, no build step, no third-party code; talks only to this
// server's /v1 API. Text from the API is always inserted with textContent (never innerHTML).
"use strict";

(() => {
  const KEY_STORAGE = "musicrec.apiKey";
  const SEARCH_DELAY_MS = 250;  // debounce: one request per pause in typing
  const SHOW_RESULTS = 10;
  const K = 10;

  const state = {
    liked: [],     // [{id, name}] seeds, in the order picked
    tags: [],      // genre/tag names the listener typed, in the order added
    session: [],   // [{id, name, artist}] plays, oldest first
    results: [],   // the current search results
    searchSeq: 0,  // request counters: a slow stale answer never overwrites a newer one
    recsSeq: 0,
    similarSeq: 0,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers["X-API-Key"] = key;
    const init = { method, headers };
    if (body instanceof Blob) {             // an uploaded file goes as it is
      headers["Content-Type"] = "application/octet-stream";
      init.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError("cannot reach the server", 0);
    }
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;  // an empty or non-JSON body; the status still says what happened
    }
    if (!resp.ok) {
      const err = data && data.error;
      throw new ApiError(err && err.message ? err.message : `HTTP ${resp.status}`, (err && err.code) || resp.status);
    }
    return data;
  }

  // A list answer may be bare or wrapped in an object ({"items": [...]}).
  function listOf(data) {
    if (Array.isArray(data)) return data;
    if (data && typeof data === "object") {
      for (const name of ["items", "results", "recommendations", "similar"]) {
        if (Array.isArray(data[name])) return data[name];
      }
    }
    return [];
  }

  function showError(err) {
    const box = $("error");
    const code = err && err.code ? ` (${err.code})` : "";
    box.textContent = `Error${code}: ${err && err.message ? err.message : err}`;
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  // ------------------------------------------------------------------ search
  let searchTimer = null;

  function onSearchInput() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, SEARCH_DELAY_MS);
  }

  async function runSearch() {
    const q = $("search-input").value.trim();
    const seq = ++state.searchSeq;
    if (!q) {
      renderResults([]);
      return;
    }
    try {
      const data = await api("GET", `/v1/search?q=${encodeURIComponent(q)}`);
      if (seq !== state.searchSeq) return;
      clearError();
      renderResults(listOf(data).slice(0, SHOW_RESULTS));
    } catch (err) {
      if (seq === state.searchSeq) showError(err);
    }
  }

  function renderResults(results) {
    state.results = results;
    const list = $("search-results");
    list.replaceChildren();
    for (const r of results) {
      const label = artistLine(r) ? `${r.name} — ${artistLine(r)}` : r.name;
      list.append(el("li", {},
        el("button", {
          type: "button", class: "result", "data-testid": "search-result", "data-item-id": String(r.item_id),
          "aria-label": `Like ${seedOf(r).name}`, text: label, onclick: () => pick(r),
        })));
    }
    if (!results.length && $("search-input").value.trim()) {
      list.append(el("li", { class: "hint", "data-testid": "search-empty", text: "No match." }));
    }
  }

  function pick(result) {
    like(result);
    $("search-input").value = "";
    renderResults([]);
    $("search-input").focus();
  }

  // ------------------------------------------------------------------ liked artists
  // A track stands for its artist (the server expands an artist name into their top tracks);
  // an artist-level item is its own seed.
  function seedOf(item) {
    const artist = artistLine(item);
    return artist ? { id: artist, name: artist } : { id: String(item.item_id), name: item.name };
  }

  function like(item) {
    const seed = seedOf(item);
    if (!state.liked.some((a) => a.id === seed.id)) {
      state.liked.push(seed);
      renderLiked();
      refreshRecs();
    }
  }

  function unlike(id) {
    state.liked = state.liked.filter((a) => a.id !== id);
    renderLiked();
    refreshRecs();
  }

  function renderLiked() {
    const list = $("liked");
    list.replaceChildren(...state.liked.map((a) =>
      el("li", { class: "chip", "data-testid": "liked-artist", "data-item-id": a.id },
        el("span", { text: a.name }),
        el("button", {
          type: "button", class: "remove", "data-testid": "liked-remove", "aria-label": `Remove ${a.name}`,
          text: "×", onclick: () => unlike(a.id),
        }))));
    $("liked-empty").hidden = state.liked.length > 0;
  }

  // ------------------------------------------------------------------ liked genres
  // A new tag is checked by the next recommendation request; one the catalogue does not know
  // (404) is taken off again and the server's message shown.
  function addTag(text) {
    const tag = text.trim();
    if (!tag || state.tags.some((t) => t.toLowerCase() === tag.toLowerCase())) return;
    state.tags.push(tag);
    renderTags();
    refreshRecs(tag);
  }

  function removeTag(tag) {
    state.tags = state.tags.filter((t) => t !== tag);
    renderTags();
    refreshRecs();
  }

  function renderTags() {
    $("tags").replaceChildren(...state.tags.map((t) =>
      el("li", { class: "chip", "data-testid": "liked-tag", "data-tag": t },
        el("span", { text: t }),
        el("button", {
          type: "button", class: "remove", "data-testid": "tag-remove", "aria-label": `Remove ${t}`,
          text: "×", onclick: () => removeTag(t),
        }))));
  }

  // ------------------------------------------------------------------ session
  function play(item) {
    state.session.push({ id: String(item.item_id), name: item.name, artist: artistLine(item) });
    renderSession();
    refreshRecs();
  }

  function renderSession() {
    const list = $("session");
    list.replaceChildren(...state.session.map((p) =>
      el("li", {
        "data-testid": "session-item", "data-item-id": p.id, text: p.artist ? `${p.name} — ${p.artist}` : p.name,
      })));
    $("session-empty").hidden = state.session.length > 0;
    $("session-clear").hidden = state.session.length === 0;
  }

  // ------------------------------------------------------------------ recommendations
  // newTag: a tag just added, removed again when the server does not know it
  async function refreshRecs(newTag) {
    const seq = ++state.recsSeq;
    const status = $("recs-status");
    if (!state.liked.length && !state.session.length && !state.tags.length) {
      renderCards($("recs"), [], "rec");
      status.textContent = "Pick an artist or a genre to get recommendations.";
      return;
    }
    status.textContent = "Loading…";
    const body = {
      seed_artists: state.liked.map((a) => a.id),
      recent_plays: state.session.map((p) => p.id),
      k: K,
    };
    if (state.tags.length) body.seed_tags = state.tags;
    try {
      const data = await api("POST", "/v1/recommendations", body);
      if (seq !== state.recsSeq) return;
      clearError();
      const items = listOf(data);
      renderCards($("recs"), items, "rec");
      // the version lets a reader (and the browser test) see that the list was refreshed
      $("recs").dataset.version = String(Number($("recs").dataset.version) + 1);
      status.textContent = items.length ? "Click a title to play it." : "No recommendations for these choices.";
    } catch (err) {
      if (seq !== state.recsSeq) return;
      status.textContent = "";
      showError(err);
      if (newTag && err.code === 404) {
        state.tags = state.tags.filter((t) => t !== newTag);
        renderTags();
      }
    }
  }

  // Recommendations for an uploaded export: the server reads it and matches it to its catalogue.
  async function uploadHistory(file) {
    const seq = ++state.recsSeq;
    const status = $("recs-status");
    const summary = $("history-summary");
    status.textContent = "Loading…";
    summary.textContent = `Reading ${file.name}…`;
    try {
      const data = await api("POST", `/v1/history/recommendations?k=${K}`, file);
      if (seq !== state.recsSeq) return;
      clearError();
      const h = data.history;
      const missing = h.unmatched.slice(0, 3).map((u) => u.name);
      summary.textContent = `${h.matched_plays.toLocaleString()} of ${h.plays.toLocaleString()} plays are of ` +
        `${h.distinct_items.toLocaleString()} artists or tracks this model knows` +
        (missing.length ? `; it does not know ${missing.join(", ")}${h.unmatched_names > 3 ? "…" : ""}` : "") + ".";
      const items = listOf(data);
      renderCards($("recs"), items, "rec");
      $("recs").dataset.version = String(Number($("recs").dataset.version) + 1);
      status.textContent = "For your listening history. Click a title to play it.";
    } catch (err) {
      if (seq !== state.recsSeq) return;
      status.textContent = "";
      summary.textContent = "";
      showError(err);
    }
  }

  function artistLine(item) {
    return item.artist && item.artist !== item.name ? item.artist : "";
  }

  // One card per item; prefix "rec" or "similar" names its data-testid values.
  function renderCards(list, items, prefix) {
    list.replaceChildren(...items.map((item) => {
      const tags = Array.isArray(item.tags) ? item.tags : [];
      return el("li", { class: "card", "data-testid": `${prefix}-item`, "data-item-id": String(item.item_id) },
        el("div", { class: "card-head" },
          el("button", {
            type: "button", class: "play", "data-testid": `${prefix}-play`, "aria-label": `Play ${item.name}`,
            text: `▶ ${item.name}`, onclick: () => play(item),
          }),
          el("span", { class: "actions" },
            el("button", {
              type: "button", "data-testid": `${prefix}-like`, "aria-label": `Like ${seedOf(item).name}`,
              text: "♥ Like", onclick: () => like(item),
            }),
            el("button", {
              type: "button", "data-testid": `${prefix}-similar`, "aria-label": `Similar to ${item.name}`,
              text: "Similar", onclick: () => openSimilar(item),
            }))),
        artistLine(item)
          ? el("div", { class: "artist", "data-testid": `${prefix}-artist`, text: artistLine(item) }) : null,
        tags.length ? el("ul", { class: "tags", "data-testid": `${prefix}-tags`, "aria-label": "Tags" },
          ...tags.map((t) => el("li", { text: t }))) : null,
        item.reason ? el("p", { class: "reason", "data-testid": `${prefix}-reason`, text: item.reason }) : null);
    }));
  }

  // ------------------------------------------------------------------ similar items
  async function openSimilar(item) {
    const seq = ++state.similarSeq;
    const panel = $("similar-panel");
    $("similar-heading").textContent = `Similar to ${item.name}`;
    panel.hidden = false;
    renderCards($("similar"), [], "similar");
    try {
      const data = await api("GET", `/v1/items/${encodeURIComponent(String(item.item_id))}/similar?k=${K}`);
      if (seq !== state.similarSeq) return;
      clearError();
      renderCards($("similar"), listOf(data), "similar");
      panel.scrollIntoView({ block: "nearest" });
    } catch (err) {
      if (seq === state.similarSeq) showError(err);
    }
  }

  // ------------------------------------------------------------------ wiring
  function init() {
    const key = $("api-key");
    try {
      key.value = localStorage.getItem(KEY_STORAGE) || "";
    } catch (e) {
      // storage may be disabled (private mode); the key then lasts for this page only
    }
    key.addEventListener("input", () => {
      try {
        localStorage.setItem(KEY_STORAGE, key.value.trim());
      } catch (e) { /* see above */ }
    });
    // once the key is complete (Enter or leaving the field), retry what the page shows
    key.addEventListener("change", () => {
      clearError();
      if ($("search-input").value.trim()) runSearch();
      if (state.liked.length || state.session.length || state.tags.length) refreshRecs();
    });
    const input = $("search-input");
    input.addEventListener("input", onSearchInput);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && state.results.length) pick(state.results[0]);
      if (ev.key === "Escape") renderResults([]);
    });
    $("tag-form").addEventListener("submit", (ev) => {
      ev.preventDefault();  // no page reload: the tag goes into this page's state
      addTag($("tag-input").value);
      $("tag-input").value = "";
    });
    $("history-file").addEventListener("change", (ev) => {
      const file = ev.target.files && ev.target.files[0];
      if (file) uploadHistory(file);
    });
    $("session-clear").addEventListener("click", () => {
      state.session = [];
      renderSession();
      refreshRecs();
    });
    $("similar-close").addEventListener("click", () => {
      state.similarSeq++;
      $("similar-panel").hidden = true;
    });
    renderLiked();
    renderSession();
  }

  init();
})();
