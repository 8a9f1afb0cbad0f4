// ocr-origin web app: upload (pick, drop, paste, several at once), show each result as a card
// (image with every line's polygon, the text line by line, copy, downloads), the shareable
// /view/<key> page, and this browser's history. Plain JS, no dependencies, nothing inline
// (a strict CSP allows same-origin files only). Without JS the form posts to /ocr as before.
"use strict";
(() => {
  const LOW_CONFIDENCE = 0.8;          // lines below this are marked (text and outline)
  const HISTORY_KEY = "ocr-origin.history.v1";
  const HISTORY_MAX = 50;
  const POLL_MS = [300, 500, 800, 1200, 2000];  // following a queued job (202): back off to 2 s
  const ACCEPTED = /^image\/(png|jpeg|jpg|pjpeg|webp|bmp|x-ms-bmp|tiff|gif)$/;
  const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]/;
  const SVG_NS = "http://www.w3.org/2000/svg";

  document.documentElement.classList.add("js");
  const body = document.body;
  const maxBytes = Number(body.dataset.maxUploadBytes || 0);
  const maxHuman = body.dataset.maxUpload || "";
  const announcer = document.getElementById("announce");
  const cards = document.getElementById("cards");
  let cardSeq = 0;

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }
  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }
  function announce(message) {
    if (!announcer) return;
    // A change of text is what screen readers announce: clear first so a repeat is read too.
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = message; }, 30);
  }
  function humanBytes(n) {
    if (n < 1024) return `${n} bytes`;
    const units = ["KiB", "MiB", "GiB"];
    let value = n, unit = "bytes";
    for (const u of units) { if (value < 1024) break; value /= 1024; unit = u; }
    return `${Number(value.toFixed(1))} ${unit}`;
  }
  function seconds(ms) {
    return ms < 1000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
  }
  function percent(c) { return `${Math.round(c * 100)} %`; }
  function langOf(text) { return HAN.test(text) ? "zh" : null; }
  function linePoints(line) {
    if (Array.isArray(line.polygon) && line.polygon.length >= 3) return line.polygon;
    const [x, y, w, h] = line.box || [0, 0, 0, 0];
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]];
  }
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      // Older browsers, or clipboard permission refused: the selection route still works.
      const area = el("textarea", { class: "visually-hidden", "aria-hidden": "true" });
      area.value = text;
      body.append(area);
      area.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      return ok;
    }
  }
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    body.append(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  function baseName(name) { return (name || "image").replace(/\.[^.]+$/, "") || "image"; }
  function errorMessage(status, json, fallback) {
    if (json && json.error && json.error.message) return json.error.message;
    if (status === 413) return `The image is too large: uploads are limited to ${maxHuman}.`;
    if (status === 502 || status === 503 || status === 504) return "The service is unavailable right now; try again in a moment.";
    return fallback || `The server answered ${status}.`;
  }

  // ------------------------------------------------------------------ one card per image
  class Card {
    constructor(title) {
      this.id = `card-${++cardSeq}`;
      this.title = title;
      this.statusEl = el("p", { class: "status", id: `${this.id}-status`, "data-testid": "card-status" });
      this.progress = el("progress", { max: "100", value: "0", "aria-labelledby": `${this.id}-status`,
                                       "data-testid": "card-progress" });
      this.root = el("li", { class: "card", id: this.id, "data-testid": "card", "aria-busy": "true",
                             "aria-labelledby": `${this.id}-title` },
        el("h2", { id: `${this.id}-title`, "data-testid": "card-title", text: title }), this.statusEl, this.progress);
      cards.prepend(this.root);
    }
    status(text) { this.statusEl.textContent = text; this.statusEl.className = "status"; }
    fail(message) {
      this.progress.remove();
      this.root.setAttribute("aria-busy", "false");
      this.root.dataset.state = "error";
      this.statusEl.className = "status error";
      this.statusEl.setAttribute("data-testid", "card-error");
      this.statusEl.textContent = `Could not read “${this.title}”: ${message}`;
      announce(this.statusEl.textContent);
    }
    show(result, { imageUrl, summary, detail }) {
      this.progress.remove();
      this.root.setAttribute("aria-busy", "false");
      this.root.dataset.state = "done";
      this.root.dataset.key = result.key;
      this.status(summary);
      this.statusEl.setAttribute("data-testid", "card-summary");
      const lines = Array.isArray(result.lines) ? result.lines : [];
      const W = Math.max(1, result.width || 1), H = Math.max(1, result.height || 1);

      // The image with every line's polygon: an SVG in the image's own pixel space (viewBox),
      // stretched over the <img>, so it scales with it at any width.
      const img = el("img", { src: imageUrl, alt: `The image “${this.title}”`, width: W, height: H,
                              "data-testid": "card-image" });
      const overlay = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                                   "aria-hidden": "true", "data-testid": "overlay" });
      const list = el("ol", { class: "lines", "data-testid": "lines", "aria-label": "Lines of text (select one to copy it)" });
      lines.forEach((line, i) => {
        const low = typeof line.confidence === "number" && line.confidence < LOW_CONFIDENCE;
        const shape = svg("polygon", { points: linePoints(line).map((p) => p.join(",")).join(" "),
                                       class: low ? "line-shape low" : "line-shape", "data-line": i,
                                       "data-testid": "polygon" });
        overlay.append(shape);
        for (const word of Array.isArray(line.words) ? line.words : []) {
          overlay.append(svg("polygon", { points: linePoints(word).map((p) => p.join(",")).join(" "),
                                          class: "word-shape", "data-testid": "word",
                                          "data-word-of": i }));
        }
        const where = (line.row !== undefined && line.column !== undefined)
          ? ` · row ${line.row + 1}, column ${line.column + 1}` : "";
        const conf = typeof line.confidence === "number"
          ? `${low ? "low confidence " : ""}${percent(line.confidence)}` : "";
        const button = el("button", { type: "button", class: low ? "line low" : "line", "data-line": i,
                                      "data-testid": "line", title: "Copy this line" },
          el("span", { class: "t", lang: langOf(line.text), "data-testid": "line-text", text: line.text }),
          el("span", { class: "c", "data-testid": "line-confidence", text: conf + where }));
        list.append(el("li", {}, button));
      });
      const figure = el("div", { class: "figure" }, img, overlay);
      const textCol = el("div", { class: "text" });
      if (lines.length) textCol.append(list);
      else textCol.append(el("p", { class: "empty", "data-testid": "no-text", text: "No text was found in this image." }));
      const meta = el("p", { class: "meta", "data-testid": "card-detail", text: detail });
      textCol.append(meta);
      this.root.append(el("div", { class: "body" }, figure, textCol));
      this.link(overlay, list);

      const name = baseName(this.title);
      const json = JSON.stringify(result, null, 2);
      const copyAll = el("button", { type: "button", "data-testid": "copy-all", text: "Copy all text" });
      copyAll.addEventListener("click", async () => {
        const ok = await copyText(result.text || "");
        announce(ok ? `Copied all ${lines.length} lines.` : "Copying failed: select the text and copy it by hand.");
      });
      const txt = el("button", { type: "button", class: "secondary", "data-testid": "download-txt", text: "Download .txt" });
      txt.addEventListener("click", () => download(`${name}.txt`, (result.text || "") + "\n", "text/plain;charset=utf-8"));
      const dl = el("button", { type: "button", class: "secondary", "data-testid": "download-json", text: "Download .json" });
      dl.addEventListener("click", () => download(`${name}.json`, json, "application/json"));
      const actions = el("div", { class: "actions" }, copyAll, txt, dl);
      if (!cards.dataset.viewKey) {
        actions.append(el("a", { class: "button secondary", href: `/view/${result.key}`, "data-testid": "view-link",
                                 text: "Shareable page" }));
      }
      actions.append(el("a", { class: "button secondary", href: `/results/${result.key}`, target: "_blank",
                               rel: "noopener", "data-testid": "json-link", text: "Result JSON (new tab)" }));
      this.root.append(actions);
      announce(`${summary}. ${lines.length ? `${lines.length} line${lines.length === 1 ? "" : "s"} of text.` : "No text found."}`);
    }
    // Hovering or focusing a line highlights its polygon, and hovering a polygon its line.
    link(overlay, list) {
      const shapes = overlay.querySelectorAll("polygon[data-line]");
      const buttons = list.querySelectorAll("button[data-line]");
      const set = (i, on) => {
        if (shapes[i]) shapes[i].classList.toggle("active", on);
        if (buttons[i]) buttons[i].classList.toggle("active", on);
      };
      buttons.forEach((button, i) => {
        for (const ev of ["mouseenter", "focus"]) button.addEventListener(ev, () => set(i, true));
        for (const ev of ["mouseleave", "blur"]) button.addEventListener(ev, () => set(i, false));
        button.addEventListener("click", async () => {
          const ok = await copyText(button.querySelector(".t").textContent);
          button.classList.add("copied");
          window.setTimeout(() => button.classList.remove("copied"), 1500);
          announce(ok ? `Copied line ${i + 1}.` : "Copying failed: select the text and copy it by hand.");
        });
      });
      shapes.forEach((shape, i) => {
        shape.addEventListener("mouseenter", () => set(i, true));
        shape.addEventListener("mouseleave", () => set(i, false));
        shape.addEventListener("click", () => buttons[i] && buttons[i].focus());
      });
    }
  }

  // What happened, in words: never the original recognition time for a reuse.
  function describe(result, match, ms) {
    const how = {
      exact: "reused an earlier result (identical image)",
      waited: "reused an earlier result (identical image, read a moment ago)",
      near: "reused an earlier result (near-duplicate image)",
    }[match];
    const head = how ? `${how[0].toUpperCase()}${how.slice(1)} in ${seconds(ms)}` : `Recognised in ${seconds(ms)}`;
    return head;
  }
  function detailOf(result, extra) {
    const parts = [];
    if (result.model) parts.push(`model ${result.model.name} ${result.model.version}`);
    if (result.finder) parts.push(`${result.finder} line finder`);
    if (typeof result.rotation === "number" && result.rotation) parts.push(`page turned ${result.rotation}°`);
    if (typeof result.skew === "number" && result.skew) parts.push(`tilt of ${Math.abs(result.skew).toFixed(1)}° straightened`);
    if (result.width && result.height) parts.push(`${result.width}×${result.height} px`);
    if (extra) parts.push(extra);
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------ history (this browser only)
  const history = {
    read() {
      try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]").filter((h) => h && h.key); }
      catch (err) { return []; }
    },
    add(entry) {
      const items = this.read().filter((h) => h.key !== entry.key);
      items.unshift(entry);
      try { localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_MAX))); } catch (err) { /* full or off */ }
      this.render();
    },
    render() {
      const section = document.querySelector("[data-testid=history-section]");
      const list = document.getElementById("history");
      const search = document.getElementById("history-search");
      if (!section || !list) return;
      const items = this.read();
      section.hidden = items.length === 0;
      const q = (search && search.value || "").trim().toLowerCase();
      list.replaceChildren();
      for (const h of items) {
        const hay = `${h.name} ${h.first}`.toLowerCase();
        if (q && !hay.includes(q)) continue;
        const when = new Date(h.time).toLocaleString();
        list.append(el("li", {}, el("a", { href: `/view/${h.key}`, "data-testid": "history-item" },
          el("strong", { text: h.name }), " ",
          el("span", { lang: langOf(h.first || ""), text: h.first ? `“${h.first}”` : "(no text)" }), " ",
          el("span", { class: "when", text: when }))));
      }
    },
  };

  // ------------------------------------------------------------------ uploading
  function post(file, card) {
    // XMLHttpRequest, not fetch: only it reports upload progress in bytes.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/ocr?format=json");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "text";
      xhr.upload.addEventListener("progress", (ev) => {
        if (!ev.lengthComputable) return;
        card.progress.value = Math.round((ev.loaded / ev.total) * 100);
        card.status(`Uploading ${humanBytes(ev.loaded)} of ${humanBytes(ev.total)}…`);
        if (ev.loaded >= ev.total) card.status("Uploaded; reading the text…");
      });
      xhr.upload.addEventListener("load", () => {
        card.progress.removeAttribute("value");  // indeterminate while the server reads
        card.status("Uploaded; reading the text…");
      });
      xhr.addEventListener("load", () => {
        let json = null;
        try { json = JSON.parse(xhr.responseText); } catch (err) { json = null; }
        resolve({ status: xhr.status, json, headers: (name) => xhr.getResponseHeader(name) });
      });
      xhr.addEventListener("error", () => reject(new Error("the network connection failed")));
      xhr.addEventListener("timeout", () => reject(new Error("the server took too long")));
      const form = new FormData();
      form.append("image", file, file.name || "pasted.png");
      xhr.send(form);
    });
  }

  async function followJob(location, card) {
    // A queued upload (202): GET the job until it redirects (fetch follows the 303) to the result.
    for (let n = 0; ; n++) {
      await new Promise((r) => window.setTimeout(r, POLL_MS[Math.min(n, POLL_MS.length - 1)]));
      const resp = await fetch(location, { headers: { Accept: "application/json" } });
      let json = null;
      try { json = await resp.json(); } catch (err) { json = null; }
      if (!resp.ok) throw new Error(errorMessage(resp.status, json));
      if (json && Array.isArray(json.lines)) return json;
      if (json && json.error) throw new Error(typeof json.error === "string" ? json.error : errorMessage(resp.status, json));
      if (json && json.status === "failed") throw new Error("recognition failed");
      const pos = json && typeof json.position === "number" && json.position > 0 ? ` (position ${json.position} in the queue)` : "";
      card.status(json && json.status === "queued" ? `Waiting in the queue${pos}…` : "Reading the text…");
    }
  }

  async function readOne(file) {
    const name = file.name || "pasted image";
    const card = new Card(name);
    if (file.type && !ACCEPTED.test(file.type)) {
      card.fail(`this is not an image we can read (${file.type}); send PNG, JPEG, WebP, BMP, TIFF or GIF.`);
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      card.fail(`the file is ${humanBytes(file.size)}; uploads are limited to ${maxHuman}.`);
      return;
    }
    card.status(`Uploading ${humanBytes(file.size)}…`);
    const t0 = performance.now();
    try {
      const resp = await post(file, card);
      let result = resp.json;
      let match = resp.headers("X-OCR-Match") || (resp.headers("X-OCR-Cache") === "HIT" ? "exact" : "miss");
      if (resp.status === 202) {
        card.status("Waiting in the queue…");
        result = await followJob(resp.headers("Location") || (resp.json && resp.json.location), card);
        match = "miss";
      } else if (resp.status !== 200 && resp.status !== 201) {
        throw new Error(errorMessage(resp.status, resp.json));
      }
      if (!result || !Array.isArray(result.lines)) throw new Error("the server's answer was not a result");
      const ms = performance.now() - t0;
      const extra = match === "miss" ? null : `first read ${result.created_at ? new Date(result.created_at).toLocaleString() : "earlier"}`;
      card.show(result, { imageUrl: URL.createObjectURL(file), summary: describe(result, match, ms),
                          detail: detailOf(result, extra) });
      card.root.dataset.match = match;
      history.add({ key: result.key, name, time: Date.now(), first: (result.lines[0] || {}).text || "" });
    } catch (err) {
      card.fail(err.message || String(err));
    }
  }

  // One upload at a time, in order: several files queue, each with its own card at once.
  let queue = Promise.resolve();
  function enqueue(files) {
    const list = Array.from(files || []).filter((f) => f && f.size !== undefined);
    if (!list.length) return;
    announce(list.length === 1 ? "Reading 1 image." : `Reading ${list.length} images.`);
    for (const file of list) queue = queue.then(() => readOne(file));
  }

  function setUpUploads() {
    const form = document.getElementById("upload-form");
    if (!form) return;
    const input = document.getElementById("file");
    const drop = document.getElementById("drop");
    input.required = false;
    input.addEventListener("change", () => {
      // Copy before clearing: clearing the input empties its live FileList.
      const files = Array.from(input.files);
      input.value = "";
      enqueue(files);
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const files = Array.from(input.files);
      input.value = "";
      enqueue(files);
    });
    let depth = 0;
    drop.addEventListener("dragenter", (ev) => { ev.preventDefault(); depth++; drop.classList.add("dragging"); });
    drop.addEventListener("dragover", (ev) => { ev.preventDefault(); if (ev.dataTransfer) ev.dataTransfer.dropEffect = "copy"; });
    drop.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.classList.remove("dragging"); });
    drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      depth = 0;
      drop.classList.remove("dragging");
      enqueue(ev.dataTransfer && ev.dataTransfer.files);
    });
    // A file dropped beside the zone would otherwise make the browser navigate away to it.
    window.addEventListener("dragover", (ev) => ev.preventDefault());
    window.addEventListener("drop", (ev) => { if (!drop.contains(ev.target)) { ev.preventDefault(); enqueue(ev.dataTransfer && ev.dataTransfer.files); } });
    document.addEventListener("paste", (ev) => {
      const data = ev.clipboardData;
      if (!data) return;
      const files = Array.from(data.files || []);
      if (!files.length) {
        for (const item of Array.from(data.items || [])) {
          if (item.kind === "file") { const f = item.getAsFile(); if (f) files.push(f); }
        }
      }
      const images = files.filter((f) => f.type.startsWith("image/"));
      if (!images.length) return;  // a text paste into the search box stays a text paste
      ev.preventDefault();
      enqueue(images.map((f, i) => (f.name && f.name !== "image.png") ? f
        : new File([f], `pasted-${new Date().toISOString().slice(11, 19).replace(/:/g, "")}${i ? `-${i}` : ""}.png`, { type: f.type })));
    });
    const search = document.getElementById("history-search");
    if (search) search.addEventListener("input", () => history.render());
    const clear = document.getElementById("history-clear");
    if (clear) clear.addEventListener("click", () => {
      try { localStorage.removeItem(HISTORY_KEY); } catch (err) { /* off */ }
      history.render();
      announce("History forgotten.");
    });
    history.render();
  }

  // ------------------------------------------------------------------ /view/<key>
  async function setUpView() {
    const key = cards && cards.dataset.viewKey;
    if (!key) return;
    const card = new Card(`Result ${key.slice(0, 8)}…`);
    card.status("Loading the result…");
    const t0 = performance.now();
    try {
      const resp = await fetch(`/results/${key}`, { headers: { Accept: "application/json" } });
      let json = null;
      try { json = await resp.json(); } catch (err) { json = null; }
      if (!resp.ok) {
        throw new Error(resp.status === 404 ? "there is no result with this key (it may have been deleted)."
          : errorMessage(resp.status, json));
      }
      const cache = resp.headers.get("X-Cache-Status");
      const created = json.created_at ? new Date(json.created_at).toLocaleString() : "earlier";
      const ms = performance.now() - t0;
      card.show(json, {
        imageUrl: `/results/${key}/thumbnail.jpg`,
        summary: `Read ${created}${typeof json.elapsed_ms === "number" ? ` in ${seconds(json.elapsed_ms)}` : ""}; loaded in ${seconds(ms)}${cache ? ` (CDN cache: ${cache})` : ""}`,
        detail: detailOf(json),
      });
    } catch (err) {
      card.fail(err.message || String(err));
    }
  }

  setUpUploads();
  setUpView();
})();
