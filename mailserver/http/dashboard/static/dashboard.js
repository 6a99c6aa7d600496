// The mailserver dashboard: /api/v1/stats and /api/v1/status every 5 s,
// /api/v1/events/stream live.
// No build step, no framework: uPlot (uPlot.iife.min.js) draws the charts.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "mailserver-token";
  const SPAN = 300; // seconds of the rate chart
  let token = sessionStorage.getItem(KEY) || "";
  let lastId = "0";
  let abort = null;
  const totals = { received: 0, refused: 0, deferred: 0, queued: 0, sent: 0 };
  const perSecond = new Map(); // second -> [in, out]
  const latency = [[], [], [], []];
  let rateChart = null, latencyChart = null;

  function headers() { return { Authorization: "Bearer " + token }; }

  async function api(path) {
    const r = await fetch(path, { headers: headers() });
    if (r.status === 401) { logout("the token was refused"); throw new Error("401"); }
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  function logout(why) {
    if (abort) abort.abort();
    token = ""; sessionStorage.removeItem(KEY);
    $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    $("login-error").textContent = why || "";
    $("status").textContent = "not connected";
  }

  function table(el, rows) {
    el.replaceChildren(...rows.map(([name, n]) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = name || "(none)";
      const b = document.createElement("td"); b.textContent = String(n); b.className = "n";
      tr.append(a, b); return tr;
    }));
  }

  function showTotals() {
    $("received-total").textContent = String(totals.received);
    $("refused-total").textContent = String(totals.refused);
    $("deferred-total").textContent = String(totals.deferred);
  }

  function age(seconds) {
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.floor(seconds / 60) + " min";
    if (seconds < 172800) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  // The queue's size and the open connections: from the daemon itself (the
  // store and every worker's gauges), not counted from events.
  async function refreshStatus() {
    const s = await api("/api/v1/status");
    $("queue-size").textContent = String(s.queue.messages);
    $("queue-age").textContent =
      s.queue.oldest_age === null ? "empty" : "oldest " + age(s.queue.oldest_age);
    const open = Object.entries(s.connections).filter(([, n]) => n > 0);
    $("connections").textContent = String(open.reduce((a, [, n]) => a + n, 0));
    $("connections-by").textContent = open.map(([p, n]) => p + " " + n).join(", ");
  }

  async function refreshStats(first) {
    const s = await api("/api/v1/stats");
    const day = s.windows["24h"], hour = s.windows["1h"], minute = s.windows["1m"];
    if (first) {
      totals.received = day.totals.received || 0;
      totals.refused = day.totals.refused || 0;
      totals.deferred = day.totals.deferred || 0;
      totals.queued = day.totals.queued || 0;
      totals.sent = day.by.filter((r) => r[0] === "attempt" && r[3] === "ok")
        .reduce((a, r) => a + r[4], 0);
      lastId = String(Math.floor(s.time * 1e6)); // ids are microseconds: events after now
      showTotals();
    }
    const reasons = (kind) => {
      const m = new Map();
      for (const r of day.by) if (r[0] === kind) m.set(r[3], (m.get(r[3]) || 0) + r[4]);
      return [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
    };
    table($("refusals"), reasons("refused"));
    table($("deferrals"), reasons("deferred"));
    const doms = new Map();
    for (const r of hour.by) if (r[0] === "received" || r[0] === "queued") {
      doms.set(r[2], (doms.get(r[2]) || 0) + r[4]);
    }
    table($("domains"), [...doms.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10));
    table($("senders"), hour.senders.slice(0, 10));
    const q = minute.latency.data;
    const ms = (v) => (v === null ? null : v * 1000);
    latency[0].push(s.time); latency[1].push(ms(q.p50)); latency[2].push(ms(q.p95));
    latency[3].push(ms(q.p99));
    if (latency[0].length > 720) latency.forEach((a) => a.shift());
    if (latencyChart) latencyChart.setData(latency);
  }

  function onEvent(ev) {
    const sec = Math.floor(ev.time);
    if (ev.kind === "received") {
      totals.received++;
      const slot = perSecond.get(sec) || [0, 0];
      slot[ev.direction === "out" ? 1 : 0]++;
      perSecond.set(sec, slot);
    } else if (ev.kind === "refused") totals.refused++;
    else if (ev.kind === "deferred") totals.deferred++;
    else if (ev.kind === "queued") totals.queued++;
    else if (ev.kind === "attempt" && ev.result === "ok") totals.sent++;
    showTotals();
  }

  function drawRates() {
    const now = Math.floor(Date.now() / 1000);
    const xs = [], ins = [], outs = [];
    for (let t = now - SPAN; t <= now; t++) {
      const slot = perSecond.get(t) || [0, 0];
      xs.push(t); ins.push(slot[0]); outs.push(slot[1]);
    }
    for (const k of perSecond.keys()) if (k < now - SPAN) perSecond.delete(k);
    const last = perSecond.get(now - 1) || [0, 0];
    $("rate-in").textContent = String(last[0]);
    $("rate-out").textContent = String(last[1]);
    if (rateChart) rateChart.setData([xs, ins, outs]);
  }

  // Server-Sent Events over fetch (an EventSource cannot send Authorization).
  async function follow() {
    while (token) {
      abort = new AbortController();
      try {
        const r = await fetch("/api/v1/events/stream", {
          headers: { ...headers(), "Last-Event-ID": lastId }, signal: abort.signal });
        if (r.status === 401) { logout("the token was refused"); return; }
        $("status").textContent = "live";
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, end); buf = buf.slice(end + 2);
            let data = null, id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("data: ")) data = line.slice(6);
              else if (line.startsWith("id: ")) id = line.slice(4);
            }
            if (data !== null) { if (id) lastId = id; onEvent(JSON.parse(data)); }
          }
        }
      } catch (e) {
        if (!token) return;
      }
      $("status").textContent = "reconnecting";
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }

  function charts() {
    const width = Math.min(640, window.innerWidth - 60);
    rateChart = new uPlot({ width, height: 220, series: [{}, { label: "in", stroke: "#1a7" },
      { label: "out", stroke: "#27c" }] }, [[], [], []], $("chart-rate"));
    // The last hour (720 points, one per refresh): without a fixed range one
    // point would stretch the time axis over years.
    const lastHour = () => { const now = Date.now() / 1000; return [now - 3600, now]; };
    latencyChart = new uPlot({ width, height: 220, scales: { x: { time: true, range: lastHour } },
      series: [{}, { label: "p50", stroke: "#1a7" },
      { label: "p95", stroke: "#e90" }, { label: "p99", stroke: "#c33" }] }, latency,
    $("chart-latency"));
  }

  async function start() {
    $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
    if (!rateChart) charts();
    try { await refreshStats(true); await refreshStatus(); } catch (e) { return; }
    follow();
    setInterval(drawRates, 1000);
    setInterval(() => refreshStats(false).catch(() => {}), 5000);
    setInterval(() => refreshStatus().catch(() => {}), 5000);
    drawRates();
  }

  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    const r = await fetch("/api/v1/stats", { headers: headers() });
    if (!r.ok) { logout(r.status === 401 ? "unknown token" : "error " + r.status); return; }
    sessionStorage.setItem(KEY, token);
    start();
  });
  $("logout").addEventListener("click", () => logout(""));
  if (token) start(); else logout("");
})();
