// The circuits dashboard: draws the pools from the server's event stream (a `snapshot` with the
// whole state when it connects, then a `tick` each period). Everything that comes from the server
// is put into the page as text (textContent) or as numbers: error texts are user data.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let view = null; // the last snapshot, kept up to date by the ticks
const cards = []; // one per pool, in the snapshot's order

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function count(n) {
  if (n === null || n === undefined) return "\u2013";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
  return String(Math.round(n));
}

function micros(us) {
  if (us === null || us === undefined) return "\u2013";
  if (us < 1000) return us.toFixed(us < 10 ? 1 : 0) + " \u00b5s";
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function age(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  return m + " min " + Math.floor(s - m * 60) + " s";
}

function clock(t) {
  const d = new Date(t);
  return d.toTimeString().slice(0, 8);
}

// A small line chart: each series is an array of numbers or nulls (gaps), over the history.
function chart(svg, series, format) {
  const w = 300, h = 80, top = 12, bottom = 4;
  svg.replaceChildren();
  let max = 0;
  for (const s of series) for (const v of s) if (v !== null && v > max) max = v;
  const n = Math.max(2, ...series.map((s) => s.length));
  const base = document.createElementNS(SVG, "line");
  for (const [k, v] of [["x1", 0], ["x2", w], ["y1", h - bottom], ["y2", h - bottom]]) base.setAttribute(k, v);
  svg.appendChild(base);
  series.forEach((values, i) => {
    let points = [];
    const flush = () => {
      if (points.length) {
        const line = document.createElementNS(SVG, "polyline");
        line.setAttribute("class", "s" + i);
        line.setAttribute("points", points.join(" "));
        svg.appendChild(line);
      }
      points = [];
    };
    values.forEach((v, j) => {
      if (v === null || v === undefined) return flush();
      const x = (w * (j + n - values.length)) / (n - 1);
      const y = h - bottom - (max > 0 ? ((h - top - bottom) * v) / max : 0);
      points.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    flush();
  });
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 4);
  label.setAttribute("y", 10);
  label.textContent = "max " + format(max);
  svg.appendChild(label);
}

function card(pool, i) {
  const node = document.getElementById("pool-card").content.firstElementChild.cloneNode(true);
  node.dataset.pool = pool.name;
  node.querySelector(".name").textContent = pool.name;
  const form = node.querySelector(".actions");
  const note = form.querySelector(".note");
  for (const input of form.querySelectorAll("input, button")) input.disabled = !view.actions;
  if (!view.actions) {
    form.title = "Actions are off (Dashboard::actions)";
    note.textContent = "actions off";
  }
  form.querySelector(".size").value = pool.min;
  for (const button of form.querySelectorAll("button")) {
    button.addEventListener("click", () => act(i, button.dataset.action, form, note));
  }
  return node;
}

async function act(i, what, form, note) {
  if (!view || !view.actions) return;
  if ((what === "stop" || what === "abort") && !window.confirm(what + " the pool " + view.pools[i].name + "?")) return;
  let url = "pools/" + i + "/" + what;
  if (what === "resize") url += "?workers=" + encodeURIComponent(form.querySelector(".size").value);
  try {
    const answer = await fetch(url, { method: "POST", headers: { "x-circuits-action": "1" } });
    note.textContent = answer.ok ? what + ": done" : what + ": " + answer.status;
  } catch (e) {
    note.textContent = what + ": " + e;
  }
}

function draw(i) {
  const pool = view.pools[i];
  const node = cards[i];
  const state = pool.state || {};
  node.dataset.stopped = String(!!state.stopped);
  node.querySelector(".mode").textContent = pool.mode || "";
  const totals = state.totals || {};
  for (const dd of node.querySelectorAll("[data-total]")) {
    const key = dd.dataset.total;
    dd.textContent = count(totals[key]);
    if (key === "workers" && pool.max > pool.min) {
      dd.previousElementSibling.textContent = "workers " + pool.min + "\u2013" + pool.max;
    }
    if (key === "failed") dd.classList.toggle("some", (totals.failed || 0) > 0);
  }
  const queued = totals.queued || 0;
  const fill = node.querySelector(".queue .fill");
  fill.style.width = pool.bound ? Math.min(100, (100 * queued) / pool.bound).toFixed(1) + "%" : (queued > 0 ? "100%" : "0");
  node.querySelector(".queue .depth").textContent = count(queued) + (pool.bound ? " / " + count(pool.bound) : " (unbounded)");

  const h = pool.history;
  chart(node.querySelector('[data-chart="rate"]'), [h.map((s) => s.rate)], count);
  chart(node.querySelector('[data-chart="latency"]'), [h.map((s) => s.p50), h.map((s) => s.p99)], micros);
  chart(node.querySelector('[data-chart="queued"]'), [h.map((s) => s.queued), h.map((s) => s.busy)], count);
  const last = h.length ? h[h.length - 1] : {};
  node.querySelector('[data-now="rate"]').textContent = count(last.rate);
  node.querySelector('[data-now="latency"]').textContent =
    last.p50 === null || last.p50 === undefined ? (state.latency ? "" : "not tracked") : micros(last.p50) + " / " + micros(last.p99);

  const rows = (state.workers || []).map((w) => {
    const tr = el("tr");
    tr.dataset.channel = w.channel;
    tr.appendChild(el("td", "channel", w.channel.slice(0, 8))).title = w.channel;
    tr.appendChild(el("td", "", w.mode));
    tr.appendChild(el("td", "pid", w.pid === null ? "" : w.pid));
    const st = tr.appendChild(el("td", "state", w.state));
    st.dataset.state = w.state;
    tr.appendChild(el("td", "", w.load));
    tr.appendChild(el("td", "", w.task === null ? "" : "#" + w.task));
    const a = tr.appendChild(el("td", "", (w.age_exact === false ? "\u2265 " : "") + age(w.age_ms)));
    if (w.age_exact === false) a.title = "counted from the first sample that saw this task";
    return tr;
  });
  node.querySelector(".workers").replaceChildren(...rows);

  const failures = (state.failures || []).map((f) => {
    const li = el("li");
    li.dataset.seq = f.seq;
    li.appendChild(el("span", "when", clock(f.at)));
    li.appendChild(el("span", "task", "#" + f.task + (f.attempt > 1 ? " (try " + f.attempt + ")" : "")));
    li.appendChild(el("span", "kind", f.kind));
    const error = li.appendChild(el("span", "error", f.error)); // text, never markup
    error.title = "worker " + f.worker;
    return li;
  });
  node.querySelector(".failures").replaceChildren(...failures);
  node.dataset.failures = failures.length ? "some" : "none";
}

function snapshot(data) {
  view = data;
  const main = document.getElementById("pools");
  cards.length = 0;
  main.replaceChildren(...view.pools.map((p, i) => (cards[i] = card(p, i))));
  if (!view.pools.length) main.appendChild(el("p", "empty", "This dashboard shows no pool."));
  view.pools.forEach((_, i) => draw(i));
  stamp(view.t);
}

function tick(data) {
  if (!view) return;
  data.pools.forEach((p, i) => {
    const pool = view.pools[i];
    if (!pool) return;
    const h = pool.history;
    if (p.sample && !(h.length && h[h.length - 1].t >= p.sample.t)) {
      h.push(p.sample);
      while (h.length > view.keep) h.shift();
    }
    pool.state = p.state;
    draw(i);
  });
  stamp(data.t);
}

function stamp(t) {
  document.getElementById("updated").textContent = "updated " + clock(t);
}

function status(state, text) {
  const s = document.getElementById("status");
  s.dataset.state = state;
  s.textContent = text;
}

function connect() {
  // EventSource reconnects by itself after a lost connection; each connection starts with a
  // snapshot, so the page is whole again without replaying what it missed.
  const events = new EventSource("events");
  events.addEventListener("open", () => status("live", "live"));
  events.addEventListener("error", () => status("lost", "reconnecting"));
  events.addEventListener("snapshot", (e) => snapshot(JSON.parse(e.data)));
  events.addEventListener("tick", (e) => tick(JSON.parse(e.data)));
}

connect();
