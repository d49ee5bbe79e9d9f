// The search page: talks only to the REST API (/health, /v1/collections, /v1/ask, /v1/documents/{path},
// and the same routes under /v1/collections/{name}/ for a collection other than the default).
// All text from the API is inserted with textContent, never as HTML.
// Offsets from the API count Unicode code points (Python strings); JS strings count UTF-16 units,
// so text is sliced with Array.from (code points).
//
// The page's whole state lives in the URL's hash (q, k, c, path, type, after, before, doc, p, pg, qs, qe):
// a link reproduces the view, editing the hash updates it, and back/forward step through questions
// and opened documents. render() applies a state and only redoes what changed.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "ask.apiKey";
  const HEALTH_POLL_MS = 5000;
  const DEFAULT_K = 5;

  // -- API ------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers["Authorization"] = "Bearer " + key;
    let response;
    try {
      response = await fetch(path, Object.assign({ cache: "no-store" }, options, { headers }));
    } catch (e) {
      throw new ApiError(0, "network", "The service cannot be reached.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const err = (body && body.error) || {};
      if (response.status === 401) showKeyBanner();
      throw new ApiError(response.status, err.code || "http_" + response.status,
                         err.message || response.statusText || "request failed");
    }
    return body;
  }

  // Collections: null until /v1/collections answered; [] when the service has none (404: no picker).
  let collections = null;
  let defaultCollection = null;

  function base(collection) {
    return collection && collection !== defaultCollection
      ? "/v1/collections/" + encodeURIComponent(collection) : "/v1";
  }
  const docUrl = (collection, source) =>
    base(collection) + "/documents/" + source.split("/").map(encodeURIComponent).join("/");

  // -- helpers --------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // text with the code-point range [a, b) wrapped in <mark>
  function highlighted(text, a, b) {
    const cps = Array.from(text);
    const frag = document.createDocumentFragment();
    a = Math.max(0, Math.min(a, cps.length));
    b = Math.max(a, Math.min(b, cps.length));
    if (b <= a) { frag.append(text); return frag; }
    frag.append(cps.slice(0, a).join(""));
    frag.append(el("mark", { text: cps.slice(a, b).join("") }));
    frag.append(cps.slice(b).join(""));
    return frag;
  }

  // "file ¶N", or "file p. P ¶N" for a paged format (a PDF's page, where ¶N counts within the page)
  const hasPage = (c) => c.page !== null && c.page !== undefined;
  const where = (c) => (hasPage(c) ? `p. ${c.page} ¶${c.paragraph}` : `¶${c.paragraph}`);
  const citeLabel = (c) => `${c.source} ${where(c)}`;

  function show(id, on) { $(id).hidden = !on; }

  function showError(message) {
    $("error").textContent = message;
    show("error", Boolean(message));
  }

  function showKeyBanner() { show("key-banner", true); $("api-key").focus(); }

  const intOrNull = (v) => (v === null || v === "" || !/^-?\d+$/.test(v) ? null : Number(v));

  // -- state <-> hash -------------------------------------------------------------------------------
  const STATE_KEYS = ["q", "k", "c", "path", "type", "after", "before", "doc", "p", "pg", "qs", "qe"];

  function stateFromHash() {
    const h = new URLSearchParams(location.hash.replace(/^#/, ""));
    const s = {};
    for (const key of STATE_KEYS) s[key] = h.get(key);
    s.k = intOrNull(s.k) ?? DEFAULT_K;
    s.type = s.type ? s.type.split(",").filter(Boolean) : [];
    for (const key of ["p", "pg", "qs", "qe"]) s[key] = intOrNull(s[key]);
    return s;
  }

  function hashFromState(s) {
    const h = new URLSearchParams();
    if (s.q) h.set("q", s.q);
    if (s.k !== DEFAULT_K) h.set("k", s.k);
    if (s.c) h.set("c", s.c);
    if (s.path) h.set("path", s.path);
    if (s.type.length) h.set("type", s.type.join(","));
    if (s.after) h.set("after", s.after);
    if (s.before) h.set("before", s.before);
    if (s.doc) {
      h.set("doc", s.doc);
      if (s.p !== null) h.set("p", s.p);
      if (s.pg !== null) h.set("pg", s.pg);
      if (s.qs !== null && s.qe !== null) { h.set("qs", s.qs); h.set("qe", s.qe); }
    }
    return h.toString();
  }

  // Go to a state: a new history entry (back returns to the previous view), then show it.
  function navigate(s, replace = false) {
    const hash = hashFromState(s);
    const url = hash ? "#" + hash : location.pathname + location.search;
    if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
    render(s);
  }

  // The filter as the API takes it: {path, type, modified_after, modified_before}, or null.
  function filterOf(s) {
    const f = {};
    if (s.path) f.path = s.path;
    if (s.type.length) f.type = s.type;
    if (s.after) f.modified_after = localMidnight(s.after, 0);
    if (s.before) f.modified_before = localMidnight(s.before, 1);  // "to" a day includes that day
    return Object.keys(f).length ? f : null;
  }

  function localMidnight(day, plusDays) {
    const [y, m, d] = day.split("-").map(Number);
    const t = new Date(y, m - 1, d + plusDays);
    return isNaN(t) ? day : t.toISOString();
  }

  // -- the form mirrors the state -------------------------------------------------------------------
  function formFromState(s) {
    // A question being typed is left alone unless the URL names another one (back, forward, an edited hash).
    if ($("question") !== document.activeElement || s.q) $("question").value = s.q || "";
    const k = $("k");
    if (![...k.options].some((o) => Number(o.value) === s.k)) k.append(el("option", { value: s.k, text: `${s.k} sources` }));
    k.value = String(s.k);
    if (collections && collections.length) $("collection").value = s.c || defaultCollection;
    $("f-path").value = s.path || "";
    for (const box of document.querySelectorAll("#f-types input")) box.checked = s.type.includes(box.value);
    $("f-after").value = s.after || "";
    $("f-before").value = s.before || "";
    const parts = [s.path, s.type.join(", "), s.after && `from ${s.after}`, s.before && `to ${s.before}`].filter(Boolean);
    $("filter-summary").textContent = parts.length ? `: ${parts.join(" · ")}` : "";
    if (parts.length) $("filter-panel").open = true;
  }

  function stateFromForm() {
    const s = stateFromHash();
    const picked = $("collection").value;
    return Object.assign(s, {
      q: $("question").value.trim() || null,
      k: Number($("k").value) || DEFAULT_K,
      c: collections && collections.length && picked !== defaultCollection ? picked : null,
      path: $("f-path").value.trim() || null,
      type: [...document.querySelectorAll("#f-types input:checked")].map((b) => b.value),
      after: $("f-after").value || null,
      before: $("f-before").value || null,
      doc: null, p: null, pg: null, qs: null, qe: null,
    });
  }

  // -- render: apply a state, redoing only what changed ------------------------------------------------
  let shownQuery = null;   // the key of the question on screen (or being asked)
  let shownDoc = null;     // the key of the open document
  let askSeq = 0;          // only the newest question's answer or error is shown

  function render(s) {
    formFromState(s);
    const queryKey = s.q ? JSON.stringify([s.q, s.k, s.c, filterOf(s)]) : null;
    if (queryKey !== shownQuery) {
      shownQuery = queryKey;
      if (s.q) ask(s); else clearAnswer(true);
    }
    const docKey = s.doc ? JSON.stringify([s.c, s.doc, s.p, s.pg, s.qs, s.qe]) : null;
    if (docKey !== shownDoc) {
      shownDoc = docKey;
      if (s.doc) openDocument(s); else hideDocument();
    }
    updateStatus();
  }

  function clearAnswer(showEmpty) {
    showError("");
    show("answer-card", false);
    show("citations-section", false);
    $("answer").textContent = "";
    $("citations").replaceChildren();
    show("empty", showEmpty);
  }

  // -- ask ------------------------------------------------------------------------------------------
  async function ask(s) {
    const mine = ++askSeq;
    clearAnswer(false);
    show("loading", true);
    $("ask-button").disabled = true;
    const body = { question: s.q, k: s.k };
    const filter = filterOf(s);
    if (filter) body.filter = filter;
    try {
      const result = await api(base(s.c) + "/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (mine === askSeq) renderAnswer(result, s);
    } catch (e) {
      if (mine !== askSeq) return;
      clearAnswer(e.status !== 401);  // the error replaces whatever answer was on screen
      showError(e.message);
      if (e.status === 401) shownQuery = null;  // asked again once a key is given
    } finally {
      if (mine === askSeq) {
        show("loading", false);
        $("ask-button").disabled = false;
      }
    }
  }

  function renderAnswer(result, s) {
    const card = $("answer-card");
    const abstained = result.answer === null;
    card.classList.toggle("abstain", abstained);
    $("answer-label").textContent = abstained ? "No confident answer" : "Answer";
    $("answer").textContent = abstained ? result.reason : result.answer;
    $("confidence").textContent = `confidence ${Number(result.confidence).toFixed(2)}`;
    const first = result.citations[0];
    $("answer-source").textContent = !abstained && first ? `— ${citeLabel(first)} [1]` : "";
    show("answer-card", true);

    const list = $("citations");
    list.replaceChildren();
    result.citations.forEach((c, i) => list.append(renderCitation(c, i + 1, s)));
    $("citations-label").textContent = abstained ? "Closest passages" : "Sources";
    show("citations-section", result.citations.length > 0);
    markActive();
  }

  function renderCitation(c, n, s) {
    const target = Object.assign({}, s, {
      doc: c.source, p: c.paragraph, pg: hasPage(c) ? c.page : null, qs: c.quote_start, qe: c.quote_end,
    });
    const link = el("a", { class: "open-doc", href: "#" + hashFromState(target), text: `Open ${where(c)} in the document →` });
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      navigate(target);
    });
    const text = el("p", { class: "cite-text" },
      highlighted(c.text, c.quote_start - c.char_start, c.quote_end - c.char_start));
    const attrs = { class: "citation", "data-source": c.source, "data-paragraph": c.paragraph };
    if (hasPage(c)) attrs["data-page"] = c.page;
    return el("li", attrs,
      el("div", { class: "cite-head" },
        el("span", { class: "cite-num", text: String(n) }),
        el("span", { class: "cite-title", text: c.title || c.source }),
        el("span", { class: "cite-source mono", text: citeLabel(c) })),
      text,
      el("div", { class: "cite-foot" }, link, el("span", { class: "score", text: `score ${Number(c.score).toFixed(3)}` })));
  }

  function markActive() {
    const s = stateFromHash();
    document.querySelectorAll("#citations .citation").forEach((item) => {
      const page = item.getAttribute("data-page");
      item.classList.toggle("active", Boolean(s.doc) && item.getAttribute("data-source") === s.doc
        && Number(item.getAttribute("data-paragraph")) === s.p && (page === null ? s.pg === null : Number(page) === s.pg));
    });
  }

  // -- document view --------------------------------------------------------------------------------
  let docSeq = 0;

  async function openDocument(s) {
    const mine = ++docSeq;
    const view = $("doc-view");
    $("doc-title").textContent = "Loading…";
    $("doc-source").textContent = citeLabel({ source: s.doc, page: s.pg, paragraph: s.p ?? 1 });
    $("doc-body").replaceChildren();
    view.hidden = false;
    document.querySelector(".layout").classList.add("with-doc");
    markActive();
    let doc;
    try {
      doc = await api(docUrl(s.c, s.doc));
    } catch (e) {
      if (mine !== docSeq) return;
      $("doc-title").textContent = "Cannot open the document";
      $("doc-body").replaceChildren(el("p", { class: "error", text: e.message }));
      return;
    }
    if (mine !== docSeq) return;
    $("doc-title").textContent = doc.title || s.doc;
    const body = $("doc-body");
    // The cited paragraph: the one holding the quote when the link carries it (exact), else by number
    // (and page, for a paged document, where paragraph numbers restart on each page).
    const holds = (p) => s.qs !== null && s.qs >= p.char_start && s.qs < p.char_end;
    const numbered = (p) => p.paragraph === (s.p ?? 1) && (s.pg === null || p.page === s.pg);
    const wanted = doc.paragraphs.find(holds) || doc.paragraphs.find(numbered) || null;
    let target = null;
    let page = null;
    for (const p of doc.paragraphs) {
      const paged = hasPage(p);
      if (paged && p.page !== page) {
        page = p.page;
        body.append(el("div", { class: "page-head", "data-page": page, text: `Page ${page}` }));
      }
      const isTarget = p === wanted;
      let content = p.text;
      if (isTarget && s.qs !== null && s.qe !== null && s.qs >= p.char_start && s.qe <= p.char_end) {
        content = highlighted(p.text, s.qs - p.char_start, s.qe - p.char_start);
      }
      const attrs = { class: "para" + (isTarget ? " target" : ""), "data-paragraph": p.paragraph,
                      id: paged ? `para-${p.page}-${p.paragraph}` : `para-${p.paragraph}` };
      if (paged) attrs["data-page"] = p.page;
      const row = el("div", attrs, el("span", { class: "para-num", text: "¶" + p.paragraph }), el("p", { class: "para-text" }, content));
      body.append(row);
      if (isTarget) target = row;
    }
    if (target) {
      // Scroll the document panel only (not the page) to put the highlight a third of the way down.
      const focus = target.querySelector("mark") || target;
      const box = body.getBoundingClientRect();
      body.scrollTop += focus.getBoundingClientRect().top - box.top - box.height / 3;
      if (window.matchMedia("(max-width: 960px)").matches) view.scrollIntoView({ block: "start" });
    }
  }

  function hideDocument() {
    ++docSeq;
    $("doc-view").hidden = true;
    document.querySelector(".layout").classList.remove("with-doc");
    markActive();
  }

  function closeDocument() {
    navigate(Object.assign(stateFromHash(), { doc: null, p: null, pg: null, qs: null, qe: null }));
  }

  // -- status: the dot is green while /health answers, red as soon as it does not ----------------------
  let health = null;  // the last /health body, or null when it did not answer

  async function pollHealth() {
    try {
      health = await api("/health");
      health.down = null;
    } catch (e) {
      health = { down: e.status === 503 ? "no index yet" : "service unavailable" };
    }
    updateStatus();
    setTimeout(pollHealth, HEALTH_POLL_MS);
  }

  function updateStatus() {
    const status = $("status");
    if (health === null) return;
    if (health.down) {
      status.textContent = health.down;
      status.className = "status down";
      return;
    }
    const picked = stateFromHash().c;
    const entry = picked && collections ? collections.find((x) => x.name === picked) : null;
    status.textContent = entry
      ? `${entry.name}: ${entry.documents} documents · ${entry.chunks} passages · ${health.model}`
      : `${health.documents} documents · ${health.chunks} passages · ${health.model}`;
    status.className = "status ok";
  }

  async function loadCollections() {
    try {
      const body = await api("/v1/collections");
      collections = body.collections || [];
    } catch (e) {
      if (e.status === 401) return;  // asked again once a key is given
      collections = [];  // a service without collections (404): no picker
    }
    const select = $("collection");
    select.replaceChildren(...collections.map((c) => el("option", {
      value: c.name, text: c.ready === false ? `${c.name} (no index yet)` : `${c.name} (${c.documents})` })));
    const dflt = collections.find((c) => c.default);
    defaultCollection = dflt ? dflt.name : null;
    show("collection-picker", collections.length > 1 || (collections.length === 1 && !dflt));
    // The hash may name a collection: routes depend on knowing the default, so render once it is known.
    shownQuery = null;
    shownDoc = null;
    render(stateFromHash());
  }

  // -- wiring ---------------------------------------------------------------------------------------
  function submit(ev) {
    if (ev) ev.preventDefault();
    const s = stateFromForm();
    if (!s.q) { showError("Type a question first."); return; }
    shownQuery = null;  // asking the same question again asks again
    navigate(s);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("ask-form").addEventListener("submit", submit);
    $("collection").addEventListener("change", () => {
      const s = stateFromForm();
      if (s.q) navigate(s); else navigate(Object.assign(stateFromHash(), { c: s.c }));
    });
    $("f-clear").addEventListener("click", () => {
      navigate(Object.assign(stateFromForm(), { path: null, type: [], after: null, before: null }));
    });
    $("doc-close").addEventListener("click", closeDocument);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("doc-view").hidden) closeDocument(); });
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      show("key-banner", false);
      showError("");
      if ($("question").value.trim() && !stateFromHash().q) { submit(); return; }
      loadCollections();
    });
    // Editing the hash, back and forward: show what the URL says.
    window.addEventListener("hashchange", () => render(stateFromHash()));
    window.addEventListener("popstate", () => render(stateFromHash()));

    pollHealth();
    loadCollections();
  });
})();
