// genrify's page: choose songs, send each to POST /api/classify, show the answer.
// Plain JavaScript, no build step, no external assets. Everything shown comes from the API.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    modelSelect: $("model-select"), modelInfo: $("model-info"), dropZone: $("drop-zone"),
    fileInput: $("file-input"), optSpectrogram: $("opt-spectrogram"), status: $("status"), error: $("error"),
    result: $("result"), songTitle: $("song-title"), topGenre: $("top-genre"), topConfidence: $("top-confidence"),
    resultModel: $("result-model"), player: $("player"), playerNote: $("player-note"), bars: $("bars"),
    votesNote: $("votes-note"), trackView: $("track-view"), timeline: $("timeline"), spectrogram: $("spectrogram"),
    spectrogramCaption: $("spectrogram-caption"), playhead: $("playhead"), axisEnd: $("axis-end"),
    segmentInfo: $("segment-info"), legend: $("legend"), results: $("results").querySelector("tbody"),
    resultsEmpty: $("results-empty"), downloadCsv: $("download-csv"), downloadJson: $("download-json"),
    clearResults: $("clear-results"), samples: $("samples"), sampleList: $("sample-list"),
  };

  // Distinct colours, assigned to genre names in the order the models list them, so a genre keeps
  // its colour across songs and models.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#2ca02c",
    "#d62728", "#9467bd", "#ff7f0e"];
  const MAX_BARS = 10;

  const state = {
    models: [], byName: new Map(), defaultModel: null, maxUpload: null,
    colors: new Map(),
    queue: [], busy: false,
    current: null,          // {file, data} shown now
    results: [],            // {id, file, model, data | null, error | null}
    cache: new Map(),       // fileKey + "\n" + model -> data
    fileIds: new WeakMap(), nextFileId: 1,
    urls: new Map(),        // File -> object URL for the player
    segments: [],           // timeline buttons of the current result
  };

  // --- small helpers ------------------------------------------------------------------------
  function colorOf(genre) {
    if (!state.colors.has(genre)) {
      const i = state.colors.size;
      let color = PALETTE[i];
      if (!color) { // more genres than colours: spread hues, fixed by the name
        let h = 0;
        for (const c of genre) h = (h * 31 + c.codePointAt(0)) % 360;
        color = `hsl(${h}, 55%, 52%)`;
      }
      state.colors.set(genre, color);
    }
    return state.colors.get(genre);
  }
  const pct = (p, digits = 1) => `${(100 * p).toFixed(digits)}%`;
  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  }
  function bytes(n) {
    return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(n >= 10 * 1024 * 1024 ? 0 : 1)} MB` : `${Math.ceil(n / 1024)} KB`;
  }
  function make(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of [].concat(children)) if (child != null) node.append(child);
    return node;
  }
  function swatch(genre) {
    const s = make("span", { class: "swatch", "aria-hidden": "true" });
    s.style.background = colorOf(genre);
    return s;
  }
  function fileKey(file) {
    if (!state.fileIds.has(file)) state.fileIds.set(file, state.nextFileId++);
    return String(state.fileIds.get(file));
  }
  function topText(data, n = 3) {
    return data.top.slice(0, n).map((t) => `${t.genre} ${pct(t.probability, 0)}`).join(", ");
  }

  // Why an answer is unsure, as the CLI's table says it ("" for a sure answer).
  function unsureText(data) {
    if (!data.low_confidence) return "";
    return data.not_music ? `not music: ${data.not_music}` : (data.unsure_reason || "unsure");
  }
  function setStatus(text) { el.status.textContent = text; }
  function showError(title, detail) {
    el.error.replaceChildren(make("strong", { text: title }), detail ? make("span", { text: detail }) : null);
    el.error.hidden = false;
  }
  function clearError() { el.error.hidden = true; el.error.replaceChildren(); }
  const selectedModel = () => el.modelSelect.value || state.defaultModel;

  // --- models -------------------------------------------------------------------------------
  async function loadModels() {
    let body;
    try {
      const response = await fetch("/api/models", { headers: { Accept: "application/json" } });
      body = await response.json();
      if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    } catch (err) {
      setStatus("");
      showError("Could not load the models from the server.", String(err.message || err));
      el.modelInfo.replaceChildren(make("p", { class: "muted", text: "No model available." }));
      return;
    }
    state.models = body.models;
    state.defaultModel = body.default;
    state.maxUpload = body.max_upload_bytes;
    for (const m of state.models) {
      state.byName.set(m.name, m);
      for (const g of m.genres) colorOf(g);
    }
    el.modelSelect.replaceChildren(...state.models.map((m) => make("option", { value: m.name, text: optionText(m) })));
    el.modelSelect.value = state.defaultModel;
    el.modelSelect.disabled = state.models.length < 2;
    if (state.maxUpload) {
      el.dropZone.querySelector(".drop-hint").textContent =
        `mp3, wav, flac, ogg, m4a, opus… up to ${bytes(state.maxUpload)} each. ` +
        "One or more; they are classified one after another. Press Enter or Space to choose.";
    }
    showModelInfo();
    setStatus(state.models.length > 1
      ? `${state.models.length} models loaded. Drop a song, or try an example.`
      : "Ready. Drop a song, or try an example.");
  }

  // The selector names each model with its genres and its main measured figure (its card's headline).
  function optionText(m) {
    const card = m.card || {};
    return [m.name, m.genres ? `${m.genres.length} genres` : null, card.headline || null].filter(Boolean).join(" · ");
  }

  // The model card (GET /api/models gives it, from genrify.models.modelcard): what the model is, its main
  // figures at a glance, and the rest (where it learned, every figure, licence, caveats) one click away.
  function showModelInfo() {
    const m = state.byName.get(selectedModel());
    if (!m) return;
    const card = m.card || { kind: "", what: m.description || "", figures: [], notes: [] };
    const fact = (term, value) => make("div", {}, [make("dt", { text: term }), make("dd", { text: value })]);
    const features = m.features || {};
    const figures = card.figures || [];
    // At a glance: the figures that say how often it is right; the rest is under "More".
    const glance = figures.filter((f) => /top-1|accuracy|macro recall/.test(f.label)).slice(0, 2);
    const more = [
      card.learned_from ? fact("Learned from", card.learned_from) : null,
      ...figures.filter((f) => !glance.includes(f)).map((f) => fact(capital(f.label), f.value)),
      fact("Segments", `${Number(m.segment_seconds).toFixed(1)} s at ${features.sample_rate || "?"} Hz, ${features.n_mels || "?"} mel bands`),
      card.licence ? fact("Licence", card.licence) : null,
    ];
    el.modelInfo.replaceChildren(
      make("div", { class: "card-head" }, [
        make("h2", { id: "model-info-title", class: "model-name", text: m.name }),
        card.kind ? make("span", { class: `badge badge-${card.kind}`, text: card.kind }) : null,
      ]),
      make("p", { class: "model-what", "data-testid": "model-what", text: capital(card.what || m.description || "") }),
      glance.length
        ? make("dl", { class: "facts" }, glance.map((f) => fact(capital(f.label), f.value)))
        : make("p", { class: "muted small", text: "No measured figures: this model's file holds no report." }),
      make("ul", { class: "chips", "aria-label": `The ${m.genres.length} genres this model knows` },
        m.genres.map((g) => make("li", { class: "chip" }, [swatch(g), g]))),
      make("details", { class: "more" }, [
        make("summary", { text: "More about this model" }),
        make("dl", { class: "card-facts" }, more),
        (card.notes || []).length ? make("ul", { class: "notes" }, card.notes.map((n) => make("li", { text: capital(n) }))) : null,
        m.description ? make("p", { class: "muted small", text: m.description }) : null,
      ]),
    );
  }
  const capital = (text) => (text ? text[0].toUpperCase() + text.slice(1) : text);

  // --- samples: the example recordings that come with genrify --------------------------------
  async function loadSamples() {
    let body;
    try {
      const response = await fetch("/api/samples", { headers: { Accept: "application/json" } });
      if (!response.ok) return; // an older server: no samples, the drop zone alone
      body = await response.json();
    } catch (err) {
      return;
    }
    const samples = (body && body.samples) || [];
    el.sampleList.replaceChildren(...samples.map((s) => {
      const button = make("button", { type: "button", class: "sample", "data-testid": "sample", "data-name": s.name,
        "aria-label": `Classify ${s.title} by ${s.artist} (${s.licence})` }, [
        make("span", { class: "sample-play", "aria-hidden": "true", text: "▶" }),
        make("span", { class: "sample-text" }, [
          make("span", { class: "sample-title", text: s.title }),
          make("span", { class: "sample-credit", text: `${s.artist} · ${s.licence}` }),
        ]),
      ]);
      button.addEventListener("click", () => classifySample(s, button));
      return make("li", {}, button);
    }));
    el.samples.hidden = samples.length === 0;
  }

  // A sample is fetched once and then treated as a file the person chose: the same upload to
  // POST /api/classify, the same player, the same session row.
  const sampleFiles = new Map();
  async function classifySample(sample, button) {
    let file = sampleFiles.get(sample.name);
    if (!file) {
      button.disabled = true;
      setStatus(`Fetching the example ${sample.title}…`);
      try {
        const response = await fetch(sample.url);
        if (!response.ok) throw new Error(`the server answered HTTP ${response.status}`);
        file = new File([await response.blob()], sample.name, { type: "audio/ogg" });
        sampleFiles.set(sample.name, file);
      } catch (err) {
        showError(`Could not fetch the example ${sample.title}.`, String(err.message || err));
        setStatus("");
        return;
      } finally {
        button.disabled = false;
      }
    }
    enqueue([file]);
  }

  el.modelSelect.addEventListener("change", () => {
    showModelInfo();
    // Compare: the song on screen again, with the model just chosen (instant when done before).
    if (state.current && !state.busy) enqueue([state.current.file]);
  });

  // --- choosing files -----------------------------------------------------------------------
  el.dropZone.addEventListener("click", () => el.fileInput.click());
  el.dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      el.fileInput.click();
    }
  });
  el.fileInput.addEventListener("change", () => {
    enqueue(Array.from(el.fileInput.files || []));
    el.fileInput.value = ""; // the same file can be chosen again
  });
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => {
      event.preventDefault();
      el.dropZone.classList.add("dragging");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget == null) el.dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => { // a drop anywhere on the page counts
    event.preventDefault();
    el.dropZone.classList.remove("dragging");
    enqueue(Array.from((event.dataTransfer && event.dataTransfer.files) || []));
  });

  // --- the queue ----------------------------------------------------------------------------
  function enqueue(files) {
    if (!files.length) return;
    if (!state.byName.size) {
      showError("No model is loaded.", "Reload the page once the server is running.");
      return;
    }
    state.queue.push(...files.map((file) => ({ file })));
    if (!state.busy) runQueue();
  }

  async function runQueue() {
    state.busy = true;
    el.dropZone.classList.add("busy");
    let done = 0;
    let total = state.queue.length;
    let failed = 0;
    while (state.queue.length) {
      total = Math.max(total, done + state.queue.length);
      const { file } = state.queue.shift();
      const label = total > 1 ? `${done + 1} of ${total}: ` : "";
      const ok = await classifyOne(file, selectedModel(), label);
      if (!ok) failed += 1;
      done += 1;
    }
    state.busy = false;
    el.dropZone.classList.remove("busy");
    if (done > 1) setStatus(`Done: ${done - failed} of ${done} songs classified${failed ? `, ${failed} failed` : ""}.`);
  }

  function upload(file, model, onProgress) {
    // XMLHttpRequest rather than fetch: it reports upload progress, which a 100 MB song needs.
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("file", file, file.name);
      const params = new URLSearchParams({ model, timeline: "true", spectrogram: String(el.optSpectrogram.checked) });
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/classify?${params}`);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
      xhr.addEventListener("load", () => {
        const body = xhr.response;
        if (xhr.status === 200 && body && body.top) resolve({ data: body });
        else resolve({ error: (body && body.detail) ? String(body.detail) : `the server answered HTTP ${xhr.status}` });
      });
      xhr.addEventListener("error", () => resolve({ error: "the server could not be reached, or closed the connection" }));
      xhr.addEventListener("abort", () => resolve({ error: "the upload was cancelled" }));
      xhr.send(form);
    });
  }

  async function classifyOne(file, model, label) {
    const key = `${fileKey(file)}\n${model}\n${el.optSpectrogram.checked}`;
    const cached = state.cache.get(key);
    if (cached) {
      clearError();
      show(file, cached);
      setStatus(`${label}${file.name}: ${cached.genre} (${pct(cached.confidence, 0)}) with ${model}.`);
      return true;
    }
    if (state.maxUpload && file.size > state.maxUpload) {
      const message = `${file.name} is ${bytes(file.size)}; this server accepts songs up to ${bytes(state.maxUpload)}.`;
      record(file, model, null, message);
      showError("This song is too large.", message);
      setStatus(`${label}${file.name}: too large.`);
      return false;
    }
    setStatus(`${label}Sending ${file.name} to ${model}…`);
    const started = performance.now();
    const answer = await upload(file, model, (f) => {
      setStatus(f < 1 ? `${label}Uploading ${file.name}: ${Math.round(100 * f)}%`
        : `${label}Classifying ${file.name} with ${model}…`);
    });
    if (answer.error) {
      // The server's line starts with the file's name, which the title already gives.
      const reason = answer.error.startsWith(`${file.name}: `) ? capital(answer.error.slice(file.name.length + 2)) : answer.error;
      record(file, model, null, reason);
      hideResult();  // the error stands alone: not above another song's answer, as if it were this one's
      showError(`Could not classify ${file.name}.`, reason);
      setStatus(`${label}${file.name}: failed.`);
      return false;
    }
    clearError();
    const data = answer.data;
    state.cache.set(key, data);
    record(file, model, data, null);
    show(file, data);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`${label}${file.name}: ${data.genre} (${pct(data.confidence, 0)}) with ${model}, in ${seconds} s.`);
    return true;
  }

  // --- showing a result ---------------------------------------------------------------------
  function urlOf(file) {
    if (!state.urls.has(file)) state.urls.set(file, URL.createObjectURL(file));
    return state.urls.get(file);
  }

  function hideResult() {
    if (!state.current) return;
    el.player.pause();
    state.current = null;
    el.result.hidden = true;
    markShownRow();
  }

  function show(file, data) {
    const sameSong = state.current && state.current.file === file;
    state.current = { file, data };
    el.result.hidden = false;
    el.songTitle.textContent = data.path || file.name;
    el.topGenre.textContent = data.genre;
    el.topGenre.style.color = "";
    const unsure = unsureText(data);
    el.topConfidence.textContent = pct(data.confidence) + (unsure ? ` · unsure (${unsure})` : "");
    el.resultModel.textContent = `· ${data.model}`;
    if (!sameSong) {
      el.playerNote.hidden = true;
      el.player.src = urlOf(file);
    }
    showBars(data);
    showTimeline(data);
    showSpectrogram(data);
    markShownRow();
  }

  function showBars(data) {
    const rows = data.top.slice(0, MAX_BARS).map(({ genre, probability }) => {
      const fill = make("div", { class: "bar-fill" });
      fill.style.width = pct(probability, 2);
      fill.style.background = colorOf(genre);
      return make("li", { class: "bar-row", "data-genre": genre, "data-testid": "bar", "aria-label": `${genre}: ${pct(probability)}` }, [
        make("span", { class: "bar-label", title: genre }, [swatch(genre), make("span", { text: genre })]),
        make("div", { class: "bar-track", "aria-hidden": "true" }, fill),
        make("span", { class: "bar-value", "aria-hidden": "true", text: pct(probability) }),
      ]);
    });
    el.bars.replaceChildren(...rows);
    const winner = Object.entries(data.votes).sort((a, b) => b[1] - a[1])[0];
    el.votesNote.textContent = winner
      ? `${data.genre === winner[0] ? "The" : "By vote, the"} most common top genre among the ${data.segments} segment${data.segments === 1 ? "" : "s"}: ${winner[0]} (${pct(winner[1], 0)}).`
      : "";
  }

  function segmentText(segment, end) {
    const best = Object.entries(segment.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 3);
    return `${clock(segment.start)}–${clock(end)}: ` + best.map(([g, p]) => `${g} ${pct(p, 0)}`).join(", ");
  }

  function showTimeline(data) {
    const model = state.byName.get(data.model);
    const length = (model && model.segment_seconds) || 3;
    const duration = Math.max(data.duration, 1e-6);
    const timeline = data.timeline || [];
    state.segments = timeline.map((segment, i) => {
      const end = Math.min(segment.start + length, Math.max(data.duration, segment.start + length * 0.25));
      const text = segmentText(segment, Math.min(end, data.duration) || end);
      const button = make("button", {
        type: "button", class: "segment", title: text, "aria-label": text, "data-testid": "segment",
        "data-start": String(segment.start), "data-genre": segment.genre, tabIndex: i === 0 ? 0 : -1,
      });
      button.style.left = `${(100 * segment.start) / duration}%`;
      button.style.width = `${(100 * Math.min(end - segment.start, duration - segment.start)) / duration}%`;
      button.style.background = colorOf(segment.genre);
      button.style.opacity = String(0.45 + 0.55 * (segment.probabilities[segment.genre] || 0));
      button.addEventListener("click", () => seek(segment.start));
      button.addEventListener("mouseenter", () => { el.segmentInfo.textContent = text; });
      button.addEventListener("focus", () => { el.segmentInfo.textContent = text; });
      button.addEventListener("keydown", (event) => moveFocus(event, i));
      return button;
    });
    // What the model did not hear: a long song is answered from a few segments spread over it, and a
    // song's last part shorter than a segment is never heard. Drawn hatched, so a gap is not
    // mistaken for a missing or grey answer.
    const gaps = unsampled(timeline, length, data.duration);
    const gapCells = gaps.map(([from, to]) => {
      const text = `${clock(from)}–${clock(to)}: not sampled (the model heard ${timeline.length} segment${timeline.length === 1 ? "" : "s"} of this song)`;
      const cell = make("div", { class: "gap", title: text, "data-testid": "gap" });
      cell.style.left = `${(100 * from) / duration}%`;
      cell.style.width = `${(100 * (to - from)) / duration}%`;
      cell.addEventListener("mouseenter", () => { el.segmentInfo.textContent = text; });
      cell.addEventListener("click", () => seek(from));
      return cell;
    });
    el.timeline.replaceChildren(...gapCells, ...state.segments);
    const heard = gaps.length ? ` The hatched parts were not sampled.` : "";
    el.timeline.setAttribute("aria-label",
      `${state.segments.length} segments of ${length.toFixed(1)} s, each coloured by its most probable genre.${heard} ` +
      "Arrow keys move between them; Enter plays from one.");
    el.axisEnd.textContent = clock(data.duration);
    el.segmentInfo.textContent = "Point at or focus a segment to see its genres; click it to play from there. Paler segments are less sure.";
    const seen = [];
    for (const g of model ? model.genres : Object.keys(data.probabilities)) {
      if (timeline.some((s) => s.genre === g)) seen.push(g);
    }
    const items = seen.map((g) => make("li", { "data-genre": g }, [swatch(g), g]));
    if (gaps.length) {
      items.push(make("li", { class: "legend-gap", "data-testid": "legend-unsampled" },
        [make("span", { class: "swatch gap-swatch", "aria-hidden": "true" }), "not sampled"]));
    }
    el.legend.replaceChildren(...items);
    updatePlayhead();
  }

  // The stretches of [0, duration] no segment covers, each at least half a second long.
  function unsampled(timeline, length, duration) {
    const spans = timeline.map((s) => [s.start, Math.min(s.start + length, duration)]).sort((a, b) => a[0] - b[0]);
    const gaps = [];
    let t = 0;
    for (const [from, to] of spans) {
      if (from - t >= 0.5) gaps.push([t, from]);
      t = Math.max(t, to);
    }
    if (duration - t >= 0.5) gaps.push([t, duration]);
    return gaps;
  }

  function moveFocus(event, i) {
    const n = state.segments.length;
    const next = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: n - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const j = Math.max(0, Math.min(n - 1, next));
    state.segments[i].tabIndex = -1;
    state.segments[j].tabIndex = 0;
    state.segments[j].focus();
  }

  function showSpectrogram(data) {
    const src = data.spectrogram_png;
    el.spectrogram.hidden = !src;
    el.spectrogramCaption.hidden = !src;
    if (src) {
      el.spectrogram.src = src;
      el.spectrogram.alt = `Log-mel spectrogram of ${data.path || "the song"}`;
    } else {
      el.spectrogram.removeAttribute("src");
    }
  }

  // --- playback -----------------------------------------------------------------------------
  function seek(seconds) {
    const player = el.player;
    const go = () => {
      player.currentTime = seconds;
      updatePlayhead();
    };
    if (player.readyState >= 1) go();
    else player.addEventListener("loadedmetadata", go, { once: true });
    const playing = player.play();
    if (playing && playing.catch) playing.catch(() => { /* autoplay refused: the position is set all the same */ });
  }

  el.spectrogram.addEventListener("click", (event) => {
    if (!state.current) return;
    const box = el.spectrogram.getBoundingClientRect();
    seek(Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * state.current.data.duration);
  });

  function updatePlayhead() {
    const data = state.current && state.current.data;
    const t = el.player.currentTime;
    if (!data || !data.duration || !Number.isFinite(t) || (t === 0 && el.player.paused)) {
      el.playhead.hidden = true;
    } else {
      el.playhead.hidden = false;
      el.playhead.style.left = `${Math.min(100, (100 * t) / data.duration)}%`;
    }
    let currentIndex = -1;
    if (data && data.timeline) {
      data.timeline.forEach((s, i) => { if (s.start <= t) currentIndex = i; });
    }
    state.segments.forEach((b, i) => b.classList.toggle("current", i === currentIndex && !el.playhead.hidden));
  }

  let frame = 0;
  function tick() {
    updatePlayhead();
    frame = el.player.paused ? 0 : requestAnimationFrame(tick);
  }
  el.player.addEventListener("play", () => { if (!frame) frame = requestAnimationFrame(tick); });
  for (const name of ["timeupdate", "seeked", "pause", "ended", "emptied"]) el.player.addEventListener(name, updatePlayhead);
  el.player.addEventListener("error", () => {
    if (!el.player.getAttribute("src")) return;
    el.playerNote.textContent = "This browser cannot play this file's format; the results above still hold.";
    el.playerNote.hidden = false;
  });

  // --- the session's results ----------------------------------------------------------------
  function record(file, model, data, error) {
    state.results.push({ id: state.results.length + 1, file, model, data, error });
    const tr = make("tr", { class: error ? "failed" : "", "data-testid": "result-row" });
    tr.dataset.index = String(state.results.length - 1);
    const name = make("button", { type: "button", class: "row-link", text: (data && data.path) || file.name,
      title: error ? "Try this song again" : "Show this result again" });
    name.addEventListener("click", () => {
      if (data) {
        clearError();
        show(file, data);
        el.result.scrollIntoView({ behavior: "smooth", block: "start" });
      } else {
        enqueue([file]);
      }
    });
    tr.append(
      make("td", {}, name),
      make("td", { text: model }),
      make("td", { text: data ? data.genre + (data.low_confidence ? " ?" : "") : "failed",
                   title: data && data.low_confidence ? `unsure: ${unsureText(data)}` : "" }),
      make("td", { class: "num", text: data ? pct(data.confidence) : "" }),
      make("td", { text: data ? topText(data) : error }),
    );
    el.results.append(tr);
    el.resultsEmpty.hidden = true;
    for (const b of [el.downloadCsv, el.downloadJson, el.clearResults]) b.disabled = false;
    markShownRow();
  }

  function markShownRow() {
    const current = state.current;
    for (const tr of el.results.querySelectorAll("tr")) {
      const r = state.results[Number(tr.dataset.index)];
      tr.classList.toggle("shown", !!(current && r && r.data === current.data));
    }
  }

  function csvCell(value) {
    let text = value == null ? "" : String(value);
    if (/^[=+\-@\t\r]/.test(text) && Number.isNaN(Number(text))) text = `'${text}`; // no formulas in spreadsheets
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  function toCsv() {
    const genres = [];
    for (const r of state.results) if (r.data) for (const g of Object.keys(r.data.probabilities)) if (!genres.includes(g)) genres.push(g);
    const head = ["song", "model", "genre", "confidence", "unsure_reason", "top3", "segments", "duration_s", "error",
                  ...genres.map((g) => `p_${g}`)];
    const lines = [head.map(csvCell).join(",")];
    for (const r of state.results) {
      const d = r.data;
      lines.push([
        d ? d.path : r.file.name, r.model, d ? d.genre : "", d ? d.confidence : "", d ? unsureText(d) : "",
        d ? topText(d) : "",
        d ? d.segments : "", d ? d.duration : "", r.error || "",
        ...genres.map((g) => (d && g in d.probabilities ? d.probabilities[g] : "")),
      ].map(csvCell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function toJson() {
    return JSON.stringify(state.results.map((r) => {
      if (!r.data) return { path: r.file.name, model: r.model, error: r.error };
      const { spectrogram_png: _drop, ...rest } = r.data; // the image stays out of the download
      return rest;
    }), null, 2);
  }

  function download(text, type, name) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = make("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  el.downloadCsv.addEventListener("click", () => download(toCsv(), "text/csv;charset=utf-8", "genrify-results.csv"));
  el.downloadJson.addEventListener("click", () => download(toJson(), "application/json", "genrify-results.json"));
  el.clearResults.addEventListener("click", () => {
    state.results = [];
    state.cache.clear();
    el.results.replaceChildren();
    el.resultsEmpty.hidden = false;
    for (const b of [el.downloadCsv, el.downloadJson, el.clearResults]) b.disabled = true;
    const keep = state.current && state.current.file;
    for (const [file, url] of state.urls) if (file !== keep) { URL.revokeObjectURL(url); state.urls.delete(file); }
    setStatus("Results cleared.");
  });

  // Exposed for tests and curious people: the session's results as the downloads give them.
  window.genrify = { toCsv, toJson, state };

  loadModels();
  loadSamples();
})();
