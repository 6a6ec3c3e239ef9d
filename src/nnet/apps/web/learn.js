// nnet serve, the learn view: start a training run, watch its events, command it.
//
// Everything shown comes from the server's events (GET /api/train/events, Server-Sent
// Events, one JSON object each): the training loop's own numbers, never recomputed here.
// The run itself lives in a process of the server; closing this page does not stop it.
// The pad, the prediction and the probabilities are app.js's, pointed at the network being
// trained (see learn.html's <body>); this file asks it to predict again as the weights move.
//
// For tests: window.nnetLearn holds counts and the latest events, and <body data-learn>
// is the run's state.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["sizes", "activation", "loss", "engine", "optimizer", "lr", "batch_size",
    "dropout", "epochs", "train_samples", "seed"];
  const ACTIVE = ["starting", "running", "paused"];
  const COLORS = { batch: "#9db4f7", held: "#1f4fd6", epoch: "#d2463c", grid: "#e2e5ec", text: "#6b7385" };
  const REPREDICT_MS = 1000; // the drawn digit is predicted again at most this often

  let status = null; // GET /api/train: presets and choices
  let run = null; // the run shown
  let state = null;
  let info = null; // its start event
  let curves = null;
  let lastRepredict = 0;
  let drawPending = false;
  let opened = false;

  const learn = (window.nnetLearn = {});

  function resetRun(id) {
    run = id;
    state = null;
    info = null;
    curves = { steps: [], loss: [], acc: [], held: [], epochs: [] };
    Object.assign(learn, {
      run: id, events: 0, points: 0, heldOut: 0, weightsSeen: 0, weightsData: "",
      state: null, last: null, lastHeldOut: null, lastSwitch: null, lastSaved: null, epochs: [],
    });
    $("switch-result").textContent = "";
    $("saturation").replaceChildren();
    const canvas = $("weights");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    redraw();
  }

  // ------------------------------------------------------------------ settings
  function fillSelect(id, names, value) {
    const select = $(id);
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    if (value !== undefined) select.value = value;
  }

  function showPreset(name) {
    const p = status.presets[name];
    $("sizes").value = p.sizes.join("-");
    $("activation").value = p.activation[0];
    $("loss").value = p.loss;
    $("engine").value = p.engine || "backprop";
    $("optimizer").value = p.optimizer;
    $("lr").value = p.lr;
    $("batch_size").value = p.batch_size;
    $("dropout").value = p.dropout ? p.dropout.join(",") : "";
    $("epochs").value = p.epochs;
    $("train_samples").value = p.train_samples ?? "";
    $("seed").value = p.seed;
  }

  function numberOr(text) {
    const n = Number(text);
    return text.trim() !== "" && Number.isFinite(n) ? n : text;
  }

  // The form as settings: the server checks them (text as nnet train reads its flags) and
  // answers with the messages nnet train prints.
  function request() {
    const body = { preset: $("preset").value };
    for (const key of FIELDS) {
      const text = $(key).value.trim();
      if (key === "sizes") body.sizes = text; // read as nnet train reads --sizes
      else if (key === "activation") body.activation = [text];
      else if (key === "dropout") body.dropout = text || [0]; // empty: no dropout
      else if (key === "train_samples") body.train_samples = text ? numberOr(text) : null;
      else if (["loss", "engine", "optimizer"].includes(key)) body[key] = text;
      else body[key] = numberOr(text);
    }
    if (body.train_samples === null) delete body.train_samples;
    return body;
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || `the server answered ${r.status}.`);
    return answer;
  }

  function say(text, isError = false) {
    const el = $("run-message");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  $("preset").addEventListener("change", () => showPreset($("preset").value));

  $("start").addEventListener("click", async () => {
    $("settings-error").textContent = "";
    try {
      await post("/api/train", request());
      say("");
    } catch (err) {
      $("settings-error").textContent = err.message;
    }
  });

  for (const name of ["pause", "resume", "step", "stop"]) {
    $(name).addEventListener("click", async () => {
      try {
        await post(`/api/train/${name}`);
      } catch (err) {
        say(err.message, true);
      }
    });
  }

  $("switch").addEventListener("click", async () => {
    try {
      await post("/api/train/switch", { engine: $("switch-engine").value });
    } catch (err) {
      say(err.message, true);
    }
  });

  $("save").addEventListener("click", async () => {
    const name = $("save-name").value.trim();
    say(`saving ${name}…`);
    try {
      await post("/api/train/save", { name });
    } catch (err) {
      say(err.message, true);
    }
  });

  function updateButtons() {
    const active = ACTIVE.includes(state);
    $("start").disabled = active;
    $("pause").disabled = !(state === "running" || state === "starting");
    $("resume").disabled = state !== "paused";
    $("step").disabled = state !== "paused";
    $("switch").disabled = state !== "paused";
    $("stop").disabled = !active;
    $("save").disabled = !(active || state === "stopped" || state === "finished") || !info;
    const badge = $("run-state");
    badge.textContent = state || "no run";
    badge.dataset.state = state || "";
    document.body.dataset.learn = state || "none";
    learn.state = state;
  }

  // ------------------------------------------------------------------ events
  function handle(ev) {
    learn.events = (learn.events || 0) + 1;
    if (ev.run !== run) {
      resetRun(ev.run);
      learn.events = 1;
    }
    switch (ev.type) {
      case "run":
        state = ev.state;
        break;
      case "start":
        info = ev;
        learn.heldOutImages = ev.held_out;
        fillSelect("switch-engine", status ? status.choices.engine : [ev.settings.engine],
          ev.settings.engine);
        $("saturation-note").textContent =
          `share of units with ${Object.entries(ev.saturation_rule).map(([k, v]) => `${k}: ${v}`).join("; ")}, on the held-out images`;
        if (window.nnetDraw) window.nnetDraw.reload();
        break;
      case "state":
        state = ev.state;
        learn.state = state;
        if (ev.state === "failed") say(ev.error || "the run failed.", true);
        if (ev.engine) $("switch-engine").value = ev.engine;
        break;
      case "batch":
        curves.steps.push(ev.step);
        curves.loss.push(ev.loss);
        curves.acc.push(ev.accuracy);
        learn.points++;
        learn.last = ev;
        if ("held_out_loss" in ev) heldOut(ev);
        break;
      case "held_out":
        heldOut(ev);
        break;
      case "epoch":
        curves.epochs.push({ step: learn.last ? learn.last.step : 0, ...ev });
        learn.epochs.push(ev);
        break;
      case "weights":
        learn.weightsSeen++;
        learn.weightsData = ev.data;
        showWeights(ev);
        repredict();
        break;
      case "switch":
        learn.lastSwitch = ev;
        $("switch-result").textContent =
          `${ev.from} → ${ev.to} before step ${ev.step + 1}: the next batch's gradient (${ev.samples} images) ` +
          `differs by at most ${ev.max_difference.toExponential(2)} ` +
          `(${ev.relative.toExponential(2)} of its largest entry)`;
        break;
      case "saved":
        learn.lastSaved = ev;
        say(`saved ${ev.path} (step ${ev.step}): held-out accuracy ${pct(ev.held_out_accuracy)}`);
        break;
      default:
        break;
    }
    updateButtons();
    showProgress();
    scheduleDraw();
  }

  function heldOut(ev) {
    curves.held.push({ step: ev.step, loss: ev.held_out_loss, acc: ev.held_out_accuracy });
    learn.heldOut++;
    learn.lastHeldOut = ev;
    showSaturation(ev.saturation);
  }

  function pct(v) {
    return typeof v === "number" ? `${(100 * v).toFixed(2)} %` : "–";
  }

  function showProgress() {
    if (!info) {
      $("progress").textContent = state === "starting" ? "loading the data…" : "Pick a preset or change the settings, then Start.";
      return;
    }
    const s = info.settings;
    const last = learn.last;
    const parts = [`${s.sizes.join("-")} · ${info.train_samples} training images · ${info.batches_per_epoch} batches of ${s.batch_size} per epoch`];
    if (last) {
      parts.push(`epoch ${last.epoch}/${s.epochs}, batch ${last.batch}, step ${last.step}, ${last.seconds.toFixed(1)} s, ${last.engine}`);
      parts.push(`batch loss ${last.loss.toFixed(4)}, accuracy ${pct(last.accuracy)}`);
    }
    if (learn.lastHeldOut) {
      parts.push(`held-out (${info.held_out} test images, every ${info.eval_every} steps): accuracy ${pct(learn.lastHeldOut.held_out_accuracy)}`);
    }
    const epoch = learn.epochs[learn.epochs.length - 1];
    if (epoch && typeof epoch.test_accuracy === "number") {
      parts.push(`after epoch ${epoch.epoch}: test accuracy ${pct(epoch.test_accuracy)}`);
    }
    $("progress").textContent = parts.join(" · ");
  }

  function repredict() {
    const now = performance.now();
    if (window.nnetDraw && now - lastRepredict >= REPREDICT_MS) {
      lastRepredict = now;
      window.nnetDraw.repredict();
    }
  }

  // ------------------------------------------------------------------ saturation
  function showSaturation(shares) {
    if (!shares || !info) return;
    const list = $("saturation");
    list.replaceChildren(
      ...shares.map((share, k) => {
        const li = document.createElement("li");
        const act = info.activations[k];
        const name = k === shares.length - 1 ? `output (${act})` : `layer ${k + 1} (${act})`;
        const bar = Object.assign(document.createElement("span"), { className: "track" });
        const fill = Object.assign(document.createElement("span"), { className: "fill" });
        fill.style.width = share === null ? "0" : `${(100 * share).toFixed(1)}%`;
        bar.append(fill);
        li.append(
          Object.assign(document.createElement("span"), { className: "name", textContent: name }),
          bar,
          Object.assign(document.createElement("span"), {
            className: "pct",
            textContent: share === null ? "no rule" : `${(100 * share).toFixed(1)} %`,
          }),
        );
        li.dataset.share = share === null ? "" : String(share);
        return li;
      }),
    );
  }

  // ------------------------------------------------------------------ weight images
  function color(v) {
    const t = Math.sqrt(Math.min(1, Math.abs(v)));
    const base = [11, 16, 32];
    const hot = v >= 0 ? [255, 236, 170] : [110, 170, 255];
    return base.map((b, i) => Math.round(b + (hot[i] - b) * t));
  }

  function showWeights(ev) {
    const n = ev.shown;
    const side = ev.side;
    const bytes = Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0));
    const cols = Math.min(n, Math.max(1, Math.ceil(Math.sqrt(2 * n))));
    const rows = Math.ceil(n / cols);
    const gap = 2;
    const canvas = $("weights");
    const scale = Math.max(1, Math.min(4, Math.floor(460 / (cols * (side + gap)))));
    canvas.width = cols * (side + gap) * scale;
    canvas.height = rows * (side + gap) * scale;
    const small = document.createElement("canvas");
    small.width = cols * (side + gap);
    small.height = rows * (side + gap);
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(small.width, small.height);
    img.data.fill(255);
    for (let k = 0; k < n; k++) {
      const ox = (k % cols) * (side + gap);
      const oy = Math.floor(k / cols) * (side + gap);
      for (let p = 0; p < side * side; p++) {
        const c = color((bytes[k * side * side + p] - 128) / 127);
        const i = 4 * ((oy + Math.floor(p / side)) * small.width + ox + (p % side));
        img.data[i] = c[0];
        img.data[i + 1] = c[1];
        img.data[i + 2] = c[2];
      }
    }
    sctx.putImageData(img, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    $("weights-note").textContent =
      `${n} of ${ev.neurons} hidden neurons, each scaled to its own largest weight (step ${ev.step}): warm positive, blue negative`;
  }

  // ------------------------------------------------------------------ curves
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      redraw();
    });
  }

  function redraw() {
    if (!curves) return;
    const end = Math.max(1, info ? info.batches_per_epoch * info.settings.epochs : 1,
      curves.steps.length ? curves.steps[curves.steps.length - 1] : 1);
    let top = 0;
    for (const v of curves.loss) top = Math.max(top, v);
    for (const h of curves.held) top = Math.max(top, h.loss);
    chart($("loss-chart"), "loss", end, top > 0 ? top * 1.05 : 1, curves.loss,
      curves.held.map((h) => [h.step, h.loss]), curves.epochs.map((e) => [e.step, e.test_loss]));
    chart($("acc-chart"), "accuracy", end, 1, curves.acc,
      curves.held.map((h) => [h.step, h.acc]), curves.epochs.map((e) => [e.step, e.test_accuracy]));
    $("curve-legend").textContent = info
      ? `x: steps (batches), ${info.batches_per_epoch} per epoch; held-out: the first ${info.held_out} test images; dots: the whole test set after each epoch`
      : "";
  }

  function chart(canvas, label, xMax, yMax, batch, held, epochs) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width;
    const H = canvas.height;
    const L = 44;
    const R = 10;
    const T = 10;
    const B = 22;
    ctx.clearRect(0, 0, W, H);
    const x = (s) => L + ((W - L - R) * s) / xMax;
    const y = (v) => T + (H - T - B) * (1 - v / yMax);
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.text;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      ctx.beginPath();
      ctx.moveTo(L, y(v));
      ctx.lineTo(W - R, y(v));
      ctx.stroke();
      ctx.fillText(label === "accuracy" ? `${Math.round(100 * v)}%` : v.toPrecision(2), 4, y(v) + 4);
    }
    if (info) {
      const per = info.batches_per_epoch;
      const every = Math.max(1, Math.ceil(info.settings.epochs / 8));
      for (let e = 1; e <= info.settings.epochs; e += every) {
        ctx.fillText(`epoch ${e}`, x((e - 1) * per) + 2, H - 6);
      }
    }
    const line = (points, style, width) => {
      if (!points.length) return;
      ctx.strokeStyle = style;
      ctx.lineWidth = width;
      ctx.beginPath();
      points.forEach(([s, v], i) => (i ? ctx.lineTo(x(s), y(v)) : ctx.moveTo(x(s), y(v))));
      ctx.stroke();
    };
    line(batch.map((v, i) => [curves.steps[i], v]), COLORS.batch, 1);
    line(held, COLORS.held, 2.5);
    ctx.fillStyle = COLORS.epoch;
    for (const [s, v] of epochs) {
      if (typeof v !== "number") continue;
      ctx.beginPath();
      ctx.arc(x(s), y(v), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  // ------------------------------------------------------------------ start
  async function init() {
    resetRun(null);
    try {
      const r = await fetch("/api/train");
      status = await r.json();
      if (!r.ok) throw new Error(status.error);
    } catch (err) {
      say("the server did not answer; is nnet serve still running?", true);
      return;
    }
    fillSelect("preset", Object.keys(status.presets), "seed");
    fillSelect("activation", status.choices.activation);
    fillSelect("loss", status.choices.loss);
    fillSelect("engine", status.choices.engine);
    fillSelect("optimizer", status.choices.optimizer);
    fillSelect("switch-engine", status.choices.engine, "backprop");
    showPreset("seed");
    $("save-name").title = `saved in the server's folder ${status.save_dir}`;
    updateButtons();
    const events = new EventSource("/api/train/events");
    events.onopen = () => {
      if (opened) resetRun(null); // reconnected: the server sends the whole run again
      opened = true;
    };
    events.onmessage = (e) => handle(JSON.parse(e.data));
  }

  init();
})();
