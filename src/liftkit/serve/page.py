"""The playground at `GET /`: pick a model (where the server hosts several), type a text (two,
for a model of sentence pairs), see the label probabilities as bars (or the score, for
regression), and the model's facts. One inline page, nothing from a CDN (it must work offline); text from the model or the
user is set with textContent, never as HTML."""

PLAYGROUND = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>liftkit playground</title>
<style>
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  main { max-width: 760px; margin: 32px auto; padding: 0 20px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  .sub { color: #5b6475; margin: 0 0 20px; }
  textarea { width: 100%; box-sizing: border-box; min-height: 90px; padding: 10px; font: inherit; border: 1px solid #c9ced8; border-radius: 6px; }
  button { margin-top: 10px; padding: 8px 18px; font: inherit; font-weight: 600; color: #fff; background: #2f6fde; border: 0; border-radius: 6px; cursor: pointer; }
  button:disabled { background: #8fa9d8; }
  #key-row { display: none; margin-top: 10px; }
  #model-row { margin: 0 0 14px; }
  #model-row select { padding: 5px; font: inherit; min-width: 240px; }
  #key-row input { padding: 6px; width: 280px; }
  section { background: #fff; border: 1px solid #e1e4ea; border-radius: 8px; padding: 16px 18px; margin-top: 18px; }
  h2 { font-size: 15px; margin: 0 0 10px; }
  #top { font-size: 20px; font-weight: 700; }
  .row { display: grid; grid-template-columns: 140px 1fr 64px; align-items: center; gap: 10px; margin: 5px 0; }
  .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .track { background: #edf0f5; border-radius: 4px; height: 16px; }
  .bar { background: #2f6fde; height: 16px; border-radius: 4px; min-width: 2px; }
  .row.best .bar { background: #1f9d55; }
  .pct { text-align: right; font-variant-numeric: tabular-nums; }
  #error { color: #b42318; margin-top: 10px; }
  dl { display: grid; grid-template-columns: 170px 1fr; gap: 4px 12px; margin: 0; }
  dt { color: #5b6475; }
  dd { margin: 0; overflow-wrap: anywhere; }
</style>
</head>
<body>
<main>
  <h1>liftkit playground</h1>
  <p class="sub" id="subtitle">loading the model's facts ...</p>
  <div id="model-row" hidden><label for="model">Model</label> <select id="model"></select></div>
  <label for="text" id="text-label">Text to classify</label>
  <textarea id="text" placeholder="i feel wonderful today"></textarea>
  <div id="pair-row" hidden>
    <label for="text-pair">Second text of the pair</label>
    <textarea id="text-pair" placeholder="today i feel great"></textarea>
  </div>
  <div id="key-row"><label>API key <input id="key" type="password" autocomplete="off"></label></div>
  <button id="go" type="button">Classify</button>
  <div id="error" role="alert"></div>
  <section id="result" hidden>
    <h2>Prediction</h2>
    <div id="top"></div>
    <div id="bars"></div>
  </section>
  <section>
    <h2>Model card</h2>
    <dl id="facts"></dl>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let pairs = false;  // the model reads sentence pairs (/info says so)
let model = null;  // the picked model's name, where the server hosts several

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function call(path, options) {
  const response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  const body = await response.json().catch(() => ({ error: "the server sent no JSON" }));
  if (response.status === 401) $("key-row").style.display = "block";
  if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
  return body;
}

function fact(name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  $("facts").append(dt, dd);
}

async function modelInfo() {
  // one model: /info is its facts; several: /info lists them, the picker chooses, its own /info follows
  const listing = await call("/info");
  if (listing.model !== undefined) return listing;
  const names = Object.keys(listing.models).filter((n) => !listing.models[n].error);
  if (!$("model").options.length) {
    for (const name of names) $("model").append(new Option(name + " (" + listing.models[name].method + ", " + listing.models[name].task + ")", name));
    $("model-row").hidden = false;
  }
  model = $("model").value;
  return await call("/models/" + encodeURIComponent(model) + "/info");
}

async function loadFacts() {
  try {
    const info = await modelInfo();
    $("subtitle").textContent = info.model + ": " + info.method + " on " + info.base_model;
    $("facts").replaceChildren();
    fact("base model", info.base_model);
    fact("method", info.method);
    fact("format / backend", info.format + (info.quantize ? " " + info.quantize : "") + " / " + (info.backend === "onnx" ? "onnxruntime" : info.backend));
    fact("task", info.task + (info.thresholds ? " (a label applies at or above its own threshold)" : ""));
    fact("input", info.input === "pair" ? "a sentence pair: two texts in, one prediction out" : "one text");
    fact("predicts", info.predicts + (info.labels.length > 1 ? ": " + info.labels.join(", ") : ""));
    pairs = info.input === "pair";
    $("pair-row").hidden = !pairs;
    $("text-label").textContent = pairs ? "First text of the pair" : "Text to classify";
    const m = info.test_metrics || {};
    if (m.spearman !== undefined) {  // regression's headline
      fact("test Spearman", m.spearman.toFixed(4) + " (" + m.rows + " rows, measured by " + m.measured_by + ")");
      fact("test Pearson", m.pearson.toFixed(4));
      fact("test MAE", m.mae.toFixed(4));
    }
    if (m.accuracy !== undefined) {
      const measured = " (" + m.rows + " rows, measured by " + m.measured_by + ")";
      if (m.micro_f1 !== undefined) fact("test micro-F1", m.micro_f1.toFixed(4) + measured);  // multi-label's headline
      fact("test " + (info.accuracy_name || "accuracy"), m.accuracy.toFixed(4) + (m.micro_f1 !== undefined ? "" : measured));
      fact("test macro-F1", m.macro_f1.toFixed(4));
    }
    if (info.shares_base) fact("shared base", info.shares_base + " (" + (info.shared_layers ? "bottom " + info.shared_layers + " layers run once for every model of this base" : "its weights held once; it runs its own layers") + ")");
    fact("liftkit", info.liftkit);
  } catch (err) {
    $("subtitle").textContent = "model facts unavailable: " + err.message;
    if ($("key-row").style.display === "block") $("subtitle").textContent += " (enter the API key, then classify)";
  }
}

function draw(result) {
  if (result.score !== undefined) {  // regression: the score itself, no bars
    $("top").textContent = "score " + result.score.toFixed(3);
    $("bars").replaceChildren();
    $("result").hidden = false;
    return;
  }
  // one label (single-label), or the predicted set (multi-label: every label at or above its threshold)
  const chosen = result.labels || [result.label];
  $("top").textContent = result.labels ? (chosen.length ? chosen.join(", ") : "(no label applies)") : result.label;
  const bars = $("bars");
  bars.replaceChildren();
  for (const item of result.probabilities) {
    const row = document.createElement("div");
    row.className = "row" + (chosen.includes(item.label) ? " best" : "");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.label;
    name.title = item.label;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = (100 * item.score).toFixed(1) + "%";
    track.append(bar);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = (100 * item.score).toFixed(1) + "%";
    row.append(name, track, pct);
    bars.append(row);
  }
  $("result").hidden = false;
}

async function classify() {
  const text = $("text").value;
  const second = $("text-pair").value;
  $("error").textContent = "";
  if (!text.trim() || (pairs && !second.trim())) { $("error").textContent = pairs ? "type both texts first" : "type some text first"; return; }
  $("go").disabled = true;
  try {
    const request = pairs ? { pairs: [[text, second]], truncate: true } : { texts: [text], truncate: true };
    if (model) request.model = model;
    const body = await call("/v1/classify", { method: "POST", body: JSON.stringify(request) });
    draw(body.results[0]);
    if (!$("facts").children.length) loadFacts();
  } catch (err) {
    $("error").textContent = err.message;
  } finally {
    $("go").disabled = false;
  }
}

$("go").addEventListener("click", classify);
$("model").addEventListener("change", () => { $("result").hidden = true; $("error").textContent = ""; loadFacts(); });
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) classify(); });
loadFacts();
</script>
</body>
</html>
"""
