// nnet serve: draw a digit, send it to the server, show what the network answers.
//
// A drawing goes to POST /api/predict as a 140x140 grayscale picture (2x2 averages of the
// 280x280 pad, values in [0, 1]) with "preprocess": true, so the server converts it with
// nnet.preprocess.to_mnist, exactly as `nnet predict` converts an image file. A random
// test digit goes as its 28x28 pixels, used as they are.
//
// For tests: window.nnetLast = {request, response} after each prediction shown (and
// window.nnetShown counts them), the element #digit carries data-digit, and
// <body data-state> is "idle" once nothing is being sent or waiting to be sent.
//
// The learn view (learn.html) uses this same pad for the network being trained: its <body>
// names other routes (data-model-url, data-predict-url), has no hidden-layer card, asks for
// the model only once a run has started (data-model-later), and calls
// window.nnetDraw.reload() when a new run starts and .repredict() as it learns.
"use strict";

(() => {
  const SIDE = 28;
  const SEND = 140; // side of the picture sent (the pad is 2 * SEND)
  const STROKE = 22; // pen width on the 280x280 pad
  const THROTTLE_MS = 100; // at most one prediction per THROTTLE_MS while drawing

  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const seen = $("seen");
  const seenCtx = seen.getContext("2d");
  const digitEl = $("digit");
  const confidenceEl = $("confidence");
  const truthEl = $("truth");
  const statusEl = $("status");
  const randomBtn = $("random");
  const MODEL_URL = document.body.dataset.modelUrl || "/api/model";
  const PREDICT_URL = document.body.dataset.predictUrl || "/api/predict";

  let model = null;
  let hasInk = false;
  let drawing = false;
  let lastPoint = null;
  let truth = null; // {label, index} while a random test digit is shown unedited
  let dirty = false; // the pad changed since the last prediction was sent
  let inFlight = 0;
  let lastSent = 0;
  let timer = null;
  let sent = 0; // numbers requests, so that a late answer never replaces a newer one
  let shown = 0;

  window.nnetLast = null;
  window.nnetShown = 0; // predictions shown so far

  // ------------------------------------------------------------------ state
  function updateState() {
    const busy = inFlight > 0 || timer !== null || (dirty && hasInk);
    document.body.dataset.state = busy ? "busy" : "idle";
  }

  function setStatus(text, isError = false) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", isError);
  }

  // ------------------------------------------------------------------ the pad
  function clearPad() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    hasInk = false;
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left) * pad.width) / r.width,
      y: ((e.clientY - r.top) * pad.height) / r.height,
    };
  }

  function strokeTo(p) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = STROKE;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (lastPoint === null) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, STROKE / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(lastPoint.x, lastPoint.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
    }
    lastPoint = p;
    hasInk = true;
  }

  function startEditing() {
    if (truth !== null) {
      truth = null;
      truthEl.textContent = "Test digit edited by hand.";
    }
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    drawing = true;
    lastPoint = null;
    startEditing();
    strokeTo(point(e));
    schedule();
  });

  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    e.preventDefault();
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) strokeTo(point(ev));
    schedule();
  });

  function endStroke(e) {
    if (!drawing) return;
    drawing = false;
    lastPoint = null;
    if (pad.hasPointerCapture(e.pointerId)) pad.releasePointerCapture(e.pointerId);
    schedule(true);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  // The pad as a SEND x SEND grayscale picture in [0, 1] (mean of each 2x2 block).
  function picture() {
    const f = pad.width / SEND;
    const data = ctx.getImageData(0, 0, pad.width, pad.height).data;
    const rows = [];
    for (let y = 0; y < SEND; y++) {
      const row = new Array(SEND);
      for (let x = 0; x < SEND; x++) {
        let sum = 0;
        for (let dy = 0; dy < f; dy++) {
          for (let dx = 0; dx < f; dx++) {
            sum += data[((y * f + dy) * pad.width + (x * f + dx)) * 4];
          }
        }
        row[x] = Math.round((sum / (f * f * 255)) * 1000) / 1000;
      }
      rows.push(row);
    }
    return rows;
  }

  // ------------------------------------------------------------------ predictions
  function schedule(now = false) {
    dirty = true;
    if (inFlight === 0) {
      const wait = THROTTLE_MS - (performance.now() - lastSent);
      if (now || wait <= 0) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        flush();
      } else if (timer === null) {
        timer = setTimeout(() => {
          timer = null;
          flush();
        }, wait);
      }
    }
    updateState();
  }

  function flush() {
    if (!dirty || inFlight > 0) return;
    dirty = false;
    if (!hasInk) {
      updateState();
      return;
    }
    predict({ pixels: picture(), preprocess: true });
  }

  async function predict(request) {
    const id = ++sent;
    inFlight++;
    lastSent = performance.now();
    updateState();
    try {
      const r = await fetch(PREDICT_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      const response = await r.json();
      if (id <= shown) return; // a newer answer is on screen, or Clear came after
      shown = id;
      if (!r.ok) {
        setStatus(response.error || `the server answered ${r.status}.`, true);
        return;
      }
      window.nnetLast = { request, response };
      show(response);
      window.nnetShown++;
      setStatus("");
    } catch (err) {
      setStatus("The server did not answer; is nnet serve still running?", true);
    } finally {
      inFlight--;
      if (dirty) schedule();
      updateState();
    }
  }

  // ------------------------------------------------------------------ showing an answer
  function show(res) {
    const label = String(res.label);
    digitEl.textContent = label;
    digitEl.dataset.digit = String(res.digit);
    digitEl.classList.toggle("long", label.length > 2);
    digitEl.classList.remove("empty");
    let text = `${percent(res.probabilities[res.digit])} probability`;
    if (truth !== null) {
      const ok = truth.label === res.digit;
      truthEl.replaceChildren(
        `Test digit #${truth.index}: true label ${truth.name} `,
        Object.assign(document.createElement("span"), {
          className: ok ? "ok" : "wrong",
          textContent: ok ? "✓ correct" : "✗ missed",
        }),
      );
      text += ok ? "" : `, true label ${truth.name}`;
    }
    confidenceEl.textContent = text;
    showBars(res.probabilities, res.digit);
    showInput(res.input);
    showHidden(res.hidden);
  }

  function percent(p) {
    return p >= 0.9995 && p < 1 ? ">99.9%" : `${(100 * p).toFixed(1)}%`;
  }

  function showBars(probabilities, top) {
    const items = $("bars").children;
    probabilities.forEach((p, q) => {
      const li = items[q];
      if (!li) return;
      li.querySelector(".fill").style.width = `${(100 * p).toFixed(2)}%`;
      li.querySelector(".pct").textContent = percent(p);
      li.classList.toggle("top", q === top);
      li.classList.toggle("truth", truth !== null && q === truth.label);
    });
  }

  function showInput(rows) {
    const img = seenCtx.createImageData(SIDE, SIDE);
    for (let r = 0; r < SIDE; r++) {
      for (let c = 0; c < SIDE; c++) {
        const v = Math.round(255 * Math.min(1, Math.max(0, rows[r][c])));
        const i = 4 * (r * SIDE + c);
        img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
        img.data[i + 3] = 255;
      }
    }
    seenCtx.putImageData(img, 0, 0);
  }

  // Positive activations glow warm white; negative ones (tanh, elu, ...) glow blue.
  function cellColor(v) {
    const t = Math.min(1, Math.abs(v));
    const base = [26, 32, 53];
    const hot = v >= 0 ? [255, 236, 170] : [110, 170, 255];
    const c = base.map((b, i) => Math.round(b + (hot[i] - b) * Math.sqrt(t)));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  function showHidden(hidden) {
    const rows = document.querySelectorAll("#layers .cells");
    hidden.forEach((acts, k) => {
      const row = rows[k];
      if (!row) return;
      let scale = 0;
      for (const v of acts) scale = Math.max(scale, Math.abs(v));
      scale = scale > 1e-9 ? scale : 1;
      const cells = row.children;
      acts.forEach((v, j) => {
        const cell = cells[j];
        cell.style.backgroundColor = cellColor(v / scale);
        cell.title = `neuron ${j + 1}: ${v.toFixed(3)}`;
      });
    });
  }

  function resetAnswer(message) {
    digitEl.textContent = "?";
    digitEl.dataset.digit = "";
    digitEl.classList.add("empty");
    digitEl.classList.remove("long");
    confidenceEl.textContent = message;
    seenCtx.fillStyle = "#000";
    seenCtx.fillRect(0, 0, SIDE, SIDE);
    for (const li of $("bars").children) {
      li.classList.remove("top", "truth");
      li.querySelector(".fill").style.width = "0";
      li.querySelector(".pct").textContent = "";
    }
    for (const cell of document.querySelectorAll("#layers .cell")) {
      cell.style.backgroundColor = "";
      cell.title = "";
    }
  }

  // ------------------------------------------------------------------ buttons
  $("clear").addEventListener("click", () => {
    clearPad();
    truth = null;
    dirty = false;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    shown = sent; // answers still on their way are for the old drawing
    truthEl.textContent = "Draw one digit, large, in the middle.";
    resetAnswer("waiting for a digit");
    setStatus("");
    updateState();
  });

  randomBtn.addEventListener("click", async () => {
    try {
      const r = await fetch("/api/random");
      const d = await r.json();
      if (!r.ok) {
        setStatus(d.error || `the server answered ${r.status}.`, true);
        return;
      }
      drawDigit(d.pixels);
      if (timer !== null) clearTimeout(timer);
      timer = null;
      dirty = false;
      const name = model ? model.classes[d.label] : String(d.label);
      truth = { label: d.label, index: d.index, name };
      truthEl.textContent = `Test digit #${d.index}: true label ${name}`;
      predict({ pixels: d.pixels, preprocess: false });
    } catch (err) {
      setStatus("The server did not answer; is nnet serve still running?", true);
    }
  });

  // A 28x28 digit, enlarged onto the pad.
  function drawDigit(rows) {
    const small = document.createElement("canvas");
    small.width = small.height = SIDE;
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(SIDE, SIDE);
    for (let r = 0; r < SIDE; r++) {
      for (let c = 0; c < SIDE; c++) {
        const v = Math.round(255 * rows[r][c]);
        const i = 4 * (r * SIDE + c);
        img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
        img.data[i + 3] = 255;
      }
    }
    sctx.putImageData(img, 0, 0);
    clearPad();
    ctx.imageSmoothingEnabled = false; // show the test digit's own pixels
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
    ctx.imageSmoothingEnabled = true;
    hasInk = true;
  }

  // ------------------------------------------------------------------ the model
  function describe(m) {
    const parts = [m.sizes.join(" → ")];
    const acts = [...new Set(m.activations.slice(0, -1))];
    if (acts.length) parts.push(acts.join("/"));
    parts.push(m.loss === "cross_entropy" ? "softmax cross-entropy" : m.loss);
    parts.push(m.dtype);
    if (m.summary && typeof m.summary.test_accuracy === "number") {
      let acc = `test accuracy ${(100 * m.summary.test_accuracy).toFixed(2)}%`;
      if (m.summary.epochs) acc += ` after ${m.summary.epochs} epoch${m.summary.epochs > 1 ? "s" : ""}`;
      parts.push(acc);
    }
    if (m.dataset && m.dataset !== "mnist") parts.push(m.dataset);
    return parts.join(" · ");
  }

  function buildBars(classes) {
    const ol = $("bars");
    ol.replaceChildren();
    classes.forEach((name) => {
      const li = document.createElement("li");
      const label = Object.assign(document.createElement("span"), {
        className: "name",
        textContent: name,
        title: name,
      });
      const track = Object.assign(document.createElement("span"), { className: "track" });
      track.append(Object.assign(document.createElement("span"), { className: "fill" }));
      const pct = Object.assign(document.createElement("span"), { className: "pct" });
      const mark = Object.assign(document.createElement("span"), {
        className: "mark",
        textContent: "true",
        title: "the true label of this test digit",
      });
      li.append(label, track, pct, mark);
      ol.append(li);
    });
  }

  function buildLayers(layers) {
    const box = $("layers");
    if (!box) return; // the learn view shows no hidden layers
    box.replaceChildren();
    if (!layers.length) {
      box.append(
        Object.assign(document.createElement("p"), {
          className: "none muted",
          textContent: "This network has no hidden layers: the pixels feed the outputs directly.",
        }),
      );
      return;
    }
    for (const layer of layers) {
      const div = document.createElement("div");
      div.className = "layer";
      div.dataset.layer = String(layer.layer);
      const label = document.createElement("div");
      label.className = "layer-label";
      label.append(
        Object.assign(document.createElement("b"), { textContent: `layer ${layer.layer}` }),
        Object.assign(document.createElement("span"), {
          className: "muted",
          textContent: `${layer.size} ${layer.activation}`,
        }),
      );
      const cells = document.createElement("div");
      cells.className = "cells";
      for (let j = 0; j < layer.size; j++) {
        const cell = document.createElement("span");
        cell.className = "cell";
        cells.append(cell);
      }
      div.append(label, cells);
      box.append(div);
    }
    sizeCells();
  }

  // Cells fill the row: one row for up to ~100 neurons (at least 6 px each), rows of
  // equal length for wider layers, never more than 28 px.
  function sizeCells() {
    const GAP = 2;
    const MIN = 6;
    const MAX = 28;
    for (const cells of document.querySelectorAll("#layers .cells")) {
      const n = cells.children.length;
      const width = cells.clientWidth - 12; // minus the padding
      if (width <= 0 || n === 0) continue;
      const fit = Math.max(1, Math.floor((width + GAP) / (MIN + GAP)));
      const rows = Math.ceil(n / Math.min(n, fit));
      const perRow = Math.ceil(n / rows);
      const side = Math.max(MIN, Math.min(MAX, Math.floor(((width + GAP) / perRow - GAP) * 10) / 10));
      cells.style.setProperty("--cell", `${side}px`);
      cells.style.gridTemplateColumns = `repeat(${perRow}, ${side}px)`;
    }
  }
  window.addEventListener("resize", sizeCells);

  async function loadModel() {
    try {
      const r = await fetch(MODEL_URL);
      model = await r.json();
      if (!r.ok) throw new Error(model.error || "");
    } catch (err) {
      model = null;
      $("model").textContent =
        err.message || "the model could not be loaded; is nnet serve still running?";
      document.body.dataset.state = "idle";
      return false;
    }
    $("model").textContent = describe(model);
    buildBars(model.classes);
    buildLayers(model.hidden_layers);
    const note = $("layers-note");
    if (note && model.hidden_layers.some((l) => !["sigmoid", "relu"].includes(l.activation))) {
      note.textContent += "; blue cells are negative";
    }
    randomBtn.disabled = !model.random_available;
    randomBtn.title = model.random_available
      ? "a random digit of the test set, with its true label"
      : "no test data on the server (see its log): draw instead";
    return true;
  }

  window.nnetDraw = {
    // the network changed (a new run): describe it again, and predict the pad again
    reload: async () => {
      if ((await loadModel()) && hasInk) schedule(true);
    },
    // the weights changed: send the last request again (not while drawing)
    repredict: () => {
      const last = window.nnetLast;
      if (model !== null && hasInk && last && !drawing && !dirty && inFlight === 0) {
        predict(last.request);
      }
    },
  };

  async function init() {
    clearPad();
    resetAnswer("waiting for a digit");
    if (document.body.dataset.modelLater !== undefined) {
      document.body.dataset.state = "idle";
      return;
    }
    if (!(await loadModel())) return;
    resetAnswer("waiting for a digit");
    updateState();
  }

  init();
})();
