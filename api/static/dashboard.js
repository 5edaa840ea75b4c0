/* The CRM live dashboard: polls /v1/dashboard, streams /v1/alerts/stream, draws with Chart.js.
   The API key comes from ?key= (then leaves the address bar) and travels as a header. */
"use strict";

const POLL_MS = 2000;
const MAX_ALERTS = 50;
const COLORS = ["#5b8cff", "#3ecf8e", "#ffb547", "#ff5d6c", "#b084ff", "#4dd0e1", "#f06292"];
// What /v1/models reports, charted by kind: scores in 0..1 share the quality chart's axis, the
// recommender's lift (a ratio; 1 is as good as popularity) has its own, and example counts a
// chart of their own. Errors in the data's units (log loss, MAE) stay in /v1/models.
const SCORES = { roc_auc: "ROC-AUC", accuracy: "accuracy", hit_rate_at_10: "hit rate@10",
                 popularity_hit_rate_at_10: "popularity hit rate@10" };
const RATIOS = { lift_over_popularity: "lift over popularity" };
const state = { key: null, charts: {}, alerts: [], alertIds: new Set(), lastEventId: null,
                rates: [], lastProcessed: null, lastPollAt: null, modelSeries: {} };
window.crmDashboard = state;

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const time = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function takeKey() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("key");
  if (fromUrl) {
    sessionStorage.setItem("crm-api-key", fromUrl);
    url.searchParams.delete("key");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem("crm-api-key");
}

async function api(path) {
  const response = await fetch(path, { headers: { "X-API-Key": state.key } });
  if (response.status === 401 || response.status === 403) throw Object.assign(
    new Error("This key cannot read the dashboard."), { auth: true });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

Chart.defaults.color = "#8d98b3";
Chart.defaults.borderColor = "rgba(42,53,80,.7)";
Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;

const timeAxis = () => ({ type: "linear", ticks: { maxTicksLimit: 7, callback: (v) => time(v) } });
const day = (ms) => new Date(ms).toISOString().slice(5, 10);  // event time: a UTC date
const hour = (ms) => new Date(ms).toISOString().slice(5, 13).replace("T", " ") + "h";

function fitTime(chart) {  // a linear axis rounds its ends outwards; time reads better tight
  const xs = chart.data.datasets.flatMap((d) => d.data.map((p) => p.x));
  const low = Math.min(...xs), high = Math.max(...xs);
  const pad = high - low < 60000 ? 30000 : 0;  // a first sample alone still gets a visible span
  chart.options.scales.x.min = xs.length ? low - pad : undefined;
  chart.options.scales.x.max = xs.length ? high + pad : undefined;
}

// Lines without markers read best, but a series of one or two samples would be invisible.
const fewPoints = (ctx) => (ctx.dataset.data.length < 3 ? 3 : 0);

function makeCharts() {
  state.charts.throughput = new Chart($("throughput-chart"), {
    type: "line",
    data: { datasets: [
      { label: "events/s", data: [], borderColor: COLORS[0], backgroundColor: "rgba(91,140,255,.15)",
        fill: true, tension: .3, pointRadius: fewPoints, yAxisID: "y" },
      { label: "consumer lag", data: [], borderColor: COLORS[2], tension: .3, pointRadius: fewPoints,
        yAxisID: "lag" }] },
    options: { animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
      scales: { x: timeAxis(), y: { beginAtZero: true, title: { display: true, text: "events/s" } },
        lag: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
               title: { display: true, text: "lag (messages)" } } } },
  });
  state.charts.segments = new Chart($("segments-chart"), {
    type: "bar",
    data: { labels: [], datasets: [{ label: "customers", data: [], borderRadius: 6,
                                      backgroundColor: COLORS }] },
    options: { animation: false, maintainAspectRatio: false, indexAxis: "y",
               plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
  });
  const legend = { position: "bottom", labels: { boxWidth: 12 } };
  state.charts.quality = new Chart($("quality-chart"), {
    type: "line", data: { datasets: [] },
    options: { animation: false, maintainAspectRatio: false, plugins: { legend },
      scales: { x: timeAxis(), y: { min: 0, max: 1, title: { display: true, text: "score (0-1)" } },
        ratio: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                 title: { display: true, text: "lift over popularity (x)" } } } },
  });
  state.charts.forecast = new Chart($("forecast-chart"), {
    type: "line",
    data: { datasets: [
      { label: "revenue", data: [], borderColor: COLORS[0], tension: .2, pointRadius: fewPoints },
      { label: "forecast then", data: [], borderColor: COLORS[2], borderDash: [4, 4], tension: .2,
        pointRadius: 0 },
      { label: "forecast", data: [], borderColor: COLORS[1], tension: .2, pointRadius: fewPoints },
      { label: "interval", data: [], borderColor: "transparent", pointRadius: 0,
        backgroundColor: "rgba(62,207,142,.18)", fill: "+1" },
      { label: "interval low", data: [], borderColor: "transparent", pointRadius: 0 }] },
    options: { animation: false, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12,
        filter: (item) => item.text !== "interval low" } } },
      scales: { x: { type: "linear", ticks: { maxTicksLimit: 8, callback: (v) => day(v) } },
                y: { beginAtZero: true, title: { display: true, text: "revenue per day" } } } },
  });
  state.charts.examples = new Chart($("examples-chart"), {
    type: "line", data: { datasets: [] },
    options: { animation: false, maintainAspectRatio: false, plugins: { legend },
      scales: { x: timeAxis(), y: { beginAtZero: true, title: { display: true, text: "examples" } } } },
  });
}

function drawThroughput(summary, now) {
  let rates = summary.throughput.map((s) => ({ x: Date.parse(s.at), y: s.events_per_s }));
  const lags = summary.throughput.filter((s) => s.lag !== null).map((s) => ({ x: Date.parse(s.at), y: s.lag }));
  if (!rates.length) {  // no worker samples: derive the rate from the processed counters
    if (state.lastProcessed !== null && now > state.lastPollAt) {
      const rate = (summary.processed_total - state.lastProcessed) * 1000 / (now - state.lastPollAt);
      state.rates.push({ x: now, y: Math.max(0, rate) });
      state.rates = state.rates.slice(-180);
    }
    rates = state.rates;
  }
  state.lastProcessed = summary.processed_total;
  state.lastPollAt = now;
  const chart = state.charts.throughput;
  chart.data.datasets[0].data = rates;
  chart.data.datasets[1].data = lags;
  fitTime(chart);
  chart.update();
  $("kpi-rate").textContent = rates.length ? fmt.format(rates[rates.length - 1].y) : "–";
  $("kpi-lag").textContent = lags.length ? fmt.format(lags[lags.length - 1].y) : "–";
}

async function fetchForecast(granularity, horizon) {
  try {
    return await api(`/v1/forecast?granularity=${granularity}&horizon=${horizon}`);
  } catch (error) {
    if (error.auth) throw error;
    return null;  // 404: no purchase yet
  }
}

// Actual revenue beside what was forecast for it, then the buckets ahead: per day, or per
// hour while fewer than three days have closed (a new shop, a short demo).
async function drawForecast() {
  let forecast = await fetchForecast("day", 14);
  let unit = "day";
  if (!forecast || (forecast.history.length < 3 && !forecast.points.length)) {
    const hourly = await fetchForecast("hour", 48);
    if (hourly) [forecast, unit] = [hourly, "hour"];
  }
  const chart = state.charts.forecast;
  chart.options.scales.y.title.text = `revenue per ${unit}`;
  chart.options.scales.x.ticks.callback = unit === "day" ? (v) => day(v) : (v) => hour(v);
  chart.options.scales.x.ticks.stepSize = unit === "day" ? 86400000 : 3600000;
  const history = forecast ? forecast.history : [];
  const points = forecast ? forecast.points : [];
  const at = (p) => Date.parse(p.start);
  chart.data.datasets[0].data = history.map((h) => ({ x: at(h), y: h.revenue }));
  chart.data.datasets[1].data = history.filter((h) => h.forecast !== null)
    .map((h) => ({ x: at(h), y: h.forecast }));
  chart.data.datasets[2].data = points.map((p) => ({ x: at(p), y: p.revenue }));
  chart.data.datasets[3].data = points.map((p) => ({ x: at(p), y: p.upper }));
  chart.data.datasets[4].data = points.map((p) => ({ x: at(p), y: p.lower }));
  chart.update();
  $("forecast-empty").hidden = history.length > 0 || points.length > 0;
  $("forecast-status").textContent = !forecast ? "" : forecast.status === "ready"
    ? `MAPE ${fmt.format(forecast.mape ?? 0)}% · MASE ${(forecast.mase ?? 0).toFixed(2)}`
    : `warming up: ${forecast.buckets_learnt} ${unit}s learnt`;
}

function drawSegments(segments) {
  const chart = state.charts.segments;
  chart.data.labels = segments.map((s) => `${s.segment} · ${s.label}`);
  chart.data.datasets[0].data = segments.map((s) => s.size);
  chart.update();
  $("segments-empty").hidden = segments.length > 0;
}

function modelSeries(summary, now) {  // every model metric over time: [{model, metric, data}]
  if (summary.model_history.length) {
    const series = {};
    for (const snap of summary.model_history) {
      for (const [metric, value] of Object.entries(snap.metrics)) {
        if (value === null) continue;
        (series[`${snap.model} · ${metric}`] ||= { model: snap.model, metric, data: [] })
          .data.push({ x: Date.parse(snap.at), y: value });
      }
    }
    return Object.values(series);
  }
  for (const model of summary.models) {  // no history yet: chart the current metrics as they move
    for (const [metric, value] of Object.entries(model.metrics)) {
      if (value === null) continue;
      const series = (state.modelSeries[`${model.name} · ${metric}`] ||= { model: model.name, metric, data: [] });
      series.data.push({ x: now, y: value });
      if (series.data.length > 300) series.data.shift();
    }
  }
  return Object.values(state.modelSeries);
}

const line = (label, data, i, extra = {}) => ({ label, data, borderColor: COLORS[i % COLORS.length],
  backgroundColor: COLORS[i % COLORS.length], pointRadius: fewPoints, tension: .25, ...extra });

function drawModels(summary, now) {
  const series = modelSeries(summary, now);
  const quality = state.charts.quality, examples = state.charts.examples;
  quality.data.datasets = series.filter((s) => s.metric in SCORES || s.metric in RATIOS)
    .map((s, i) => s.metric in RATIOS
      ? line(`${s.model} · ${RATIOS[s.metric]}`, s.data, i, { yAxisID: "ratio", borderDash: [6, 4] })
      : line(`${s.model} · ${SCORES[s.metric]}`, s.data, i, { yAxisID: "y" }));
  quality.options.scales.ratio.display = quality.data.datasets.some((d) => d.yAxisID === "ratio");
  examples.data.datasets = series.filter((s) => s.metric === "examples").map((s, i) => line(s.model, s.data, i));
  for (const [chart, empty] of [[quality, "quality-empty"], [examples, "examples-empty"]]) {
    fitTime(chart);
    chart.update();
    $(empty).hidden = chart.data.datasets.length > 0;
  }
}

function reasons(explanation) {
  const cell = el("td");
  for (const item of explanation.slice(0, 3)) {
    const sign = item.contribution >= 0 ? "up" : "down";
    cell.append(el("span", { class: `chip ${sign}`, title: `value ${item.value}` },
      `${item.feature.replaceAll("_", " ")} ${item.contribution >= 0 ? "+" : ""}${item.contribution.toFixed(2)}`));
  }
  if (!explanation.length) cell.append(el("span", { class: "muted" }, "–"));
  return cell;
}

function drawAtRisk(customers) {
  const body = $("at-risk-table").querySelector("tbody");
  body.replaceChildren(...customers.map((c) => {
    const bar = el("div", { class: "bar" }, el("span", { style: `width:${Math.round(c.churn_probability * 100)}%` }),
      el("b", {}, `${Math.round(c.churn_probability * 100)}%`));
    return el("tr", {}, el("td", { class: "id" }, c.customer_id), el("td", {}, bar), reasons(c.churn_explanation));
  }));
  $("at-risk-empty").hidden = customers.length > 0;
}

function addAlert(alert, fresh) {
  if (state.alertIds.has(alert.alert_id)) return;
  state.alertIds.add(alert.alert_id);
  state.alerts.unshift(alert);
  const item = el("li", { class: `kind-${alert.kind}${fresh ? " fresh" : ""}` },
    el("span", { class: "meta" }, time(Date.parse(alert.emitted_at))),
    el("span", { class: "kind" }, alert.kind.replaceAll("_", " ")), " · ",
    el("span", { class: "id" }, alert.customer_id), el("p", {}, alert.reason));
  const feed = $("alert-feed");
  if (fresh) feed.prepend(item); else feed.append(item);
  while (feed.children.length > MAX_ALERTS) feed.lastChild.remove();
  $("alerts-empty").hidden = true;
}

async function poll() {
  try {
    const summary = await api("/v1/dashboard");
    const now = Date.now();
    $("tenant").textContent = `tenant ${summary.tenant}`;
    $("kpi-customers").textContent = fmt.format(summary.customers);
    $("kpi-processed").textContent = fmt.format(summary.processed_total);
    $("kpi-dead").textContent = fmt.format(summary.counters
      .filter((c) => c.outcome === "dead_letter").reduce((sum, c) => sum + c.count, 0));
    drawThroughput(summary, now);
    drawSegments(summary.segments);
    drawModels(summary, now);
    drawAtRisk(summary.at_risk);
    await drawForecast();
    for (const alert of [...summary.alerts].reverse()) addAlert(alert, false);
    $("updated").textContent = `updated ${time(now)}`;
  } catch (error) {
    $("updated").textContent = error.message;
    if (error.auth) return showLogin(error.message);
  }
  setTimeout(poll, POLL_MS);
}

function setLive(on) {
  $("live").classList.toggle("off", !on);
  $("live").querySelector("b").textContent = on ? "live" : "offline";
}

function handleBlock(block) {
  const fields = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    fields[name] = fields[name] ? `${fields[name]}\n${value}` : value;
  }
  if (fields.id) state.lastEventId = fields.id;
  if (fields.event === "alert" && fields.data) addAlert(JSON.parse(fields.data), true);
}

async function streamAlerts() {  // fetch, not EventSource: it can send the key as a header
  for (;;) {
    try {
      const headers = { "X-API-Key": state.key, Accept: "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const response = await fetch("/v1/alerts/stream", { headers });
      if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replaceAll("\r\n", "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) { console.warn(error); }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function showLogin(message) {
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function start() {
  state.key = takeKey();
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("crm-api-key", $("key-input").value.trim());
    location.reload();
  });
  if (!state.key) return showLogin();
  $("board").hidden = false;
  makeCharts();
  poll();
  streamAlerts();
}

document.addEventListener("DOMContentLoaded", start);
