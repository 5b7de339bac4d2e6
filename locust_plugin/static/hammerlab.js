// Hammerlab's fault control, shown above the Target server table in Locust's web UI, and the
// Mitigations tab's trends, shown above its table.
// Locust's extra tabs are tables only, so this script adds the buttons. They post to the Locust web
// app (/hammerlab/faults), which forwards to the target's /admin/faults when the target is on loopback.
// The trends (the last 30 s of each client's limit, in flight, SLO goodput/s and shed/s, per worker)
// come from /hammerlab/mitigations.json with their sparklines drawn, by the same code as the Target
// server tab's (web_tables.sparkline): this script only lays them out.
(function () {
  "use strict";
  const me = document.currentScript;
  const base = me.dataset.base || "";
  const tab = me.dataset.tab;
  const trendsTab = me.dataset.trendsTab;
  const FAULTS = [
    { id: "outage", label: "Outage", fields: [["duration_s", "for s", 10]] },
    { id: "error", label: "Errors", fields: [["rate", "rate", 0.5], ["duration_s", "for s", 10]] },
    { id: "reset", label: "Resets", fields: [["rate", "rate", 0.3], ["duration_s", "for s", 10]] },
    { id: "hang", label: "Hangs", fields: [["rate", "rate", 0.2], ["duration_s", "for s", 10]] },
  ];
  let panel = null;
  let message = null;
  let active = null;
  let trends = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function send(method, body) {
    message.textContent = "…";
    try {
      const response = await fetch(base + "/hammerlab/faults", {
        method: method,
        headers: { "Content-Type": "application/json" },
        body: body ? JSON.stringify(body) : undefined,
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        message.textContent = data.error || "failed: HTTP " + response.status;
        message.className = "hammerlab-error";
        return;
      }
      message.className = "hammerlab-ok";
      message.textContent = method === "DELETE"
        ? "cleared " + (data.removed || 0) + " fault(s)"
        : "started " + data.fault.kind + " (" + data.fault.id + ")";
      refresh();
    } catch (error) {
      message.className = "hammerlab-error";
      message.textContent = "cannot reach the Locust web UI: " + error;
    }
  }

  function build() {
    panel = el("div", { id: "hammerlab-faults", "data-testid": "hammerlab-faults" });
    panel.appendChild(el("strong", {}, "Faults on the target "));
    FAULTS.forEach((fault) => {
      const group = el("span", { class: "hammerlab-fault" });
      const inputs = {};
      fault.fields.forEach(([key, label, value]) => {
        const input = el("input", { type: "number", step: "any", min: "0", value: String(value),
          name: fault.id + "-" + key, "aria-label": fault.label + " " + label, title: label });
        inputs[key] = input;
        group.appendChild(el("label", {}, label + " "));
        group.appendChild(input);
      });
      const button = el("button", { type: "button", "data-fault": fault.id }, fault.label);
      button.addEventListener("click", () => {
        const body = { kind: fault.id };
        Object.entries(inputs).forEach(([key, input]) => { body[key] = Number(input.value); });
        send("POST", body);
      });
      group.insertBefore(button, group.firstChild);
      panel.appendChild(group);
    });
    const clear = el("button", { type: "button", "data-fault": "clear" }, "Clear faults");
    clear.addEventListener("click", () => send("DELETE"));
    panel.appendChild(clear);
    active = el("div", { class: "hammerlab-active" }, "");
    message = el("div", { class: "hammerlab-message", role: "status" }, "");
    panel.appendChild(active);
    panel.appendChild(message);
  }

  async function refresh() {
    if (!panel || !panel.isConnected) return;
    try {
      const response = await fetch(base + "/hammerlab/live");
      const data = await response.json();
      active.textContent = "Active: " + (data.faults.length ? data.faults.join("; ") : "none") +
        " · " + data.status;
    } catch (error) {
      active.textContent = "";
    }
  }

  // -- the Mitigations tab's trends ------------------------------------------------------------------

  function buildTrends() {
    trends = el("div", { id: "hammerlab-trends", "data-testid": "hammerlab-trends" });
    trends.appendChild(el("strong", {}, "Last 30 s"));
    trends.appendChild(el("span", { class: "hammerlab-range" }, " (now, and low–high under it)"));
    trends.appendChild(el("div", { class: "hammerlab-message" }, "…"));
  }

  function trendCell(metric) {
    const td = el("td", {});
    td.appendChild(el("span", { class: "hammerlab-spark" }, metric.trend || "·"));
    const numbers = td.appendChild(el("span", { class: "hammerlab-numbers" }));
    numbers.appendChild(el("span", { class: "hammerlab-now" }, metric.now));
    numbers.appendChild(el("span", { class: "hammerlab-range" }, metric.low === "" ? "" :
      metric.low + "–" + metric.high));
    return td;
  }

  // Locust's worker ids are a host name and 32 hex digits: the tail tells them apart, the title has it all.
  function workerCell(worker) {
    const short = worker.length > 18 ? "…" + worker.slice(-8) : worker;
    return el("td", { title: worker }, short);
  }

  function drawTrends(data) {
    const table = el("table", { class: "hammerlab-trends" });
    const head = el("tr", {});
    ["Client", "Worker"].concat(data.metrics.map((m) => m.label))
      .forEach((title) => head.appendChild(el("th", {}, title)));
    table.appendChild(el("thead", {})).appendChild(head);
    const body = table.appendChild(el("tbody", {}));
    data.rows.forEach((row) => {
      const tr = el("tr", { "data-client": row.client, "data-worker": row.worker });
      tr.appendChild(el("td", {}, row.client));
      tr.appendChild(workerCell(row.worker));
      data.metrics.forEach((m) => tr.appendChild(trendCell(row[m.key])));
      body.appendChild(tr);
    });
    trends.replaceChild(
      data.rows.length ? table : el("div", { class: "hammerlab-message" }, "no samples yet"),
      trends.lastChild,
    );
  }

  async function refreshTrends() {
    if (!trends || !trends.isConnected) return;
    try {
      const response = await fetch(base + "/hammerlab/mitigations.json");
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      drawTrends(data);
    } catch (error) {
      trends.replaceChild(el("div", { class: "hammerlab-error" }, "trends: " + error), trends.lastChild);
    }
  }

  // -- placing the panels ---------------------------------------------------------------------------

  function above(node, table) {
    if (table && table.parentNode && node.nextSibling !== table) {
      node.classList.remove("hammerlab-floating");
      table.parentNode.insertBefore(node, table);
      return true;
    }
    return false;
  }

  function place() {
    const current = new URLSearchParams(window.location.search).get("tab");
    const table = document.querySelector(".MuiTableContainer-root");
    if (current !== trendsTab) {
      if (trends && trends.isConnected) trends.remove();
    } else {
      if (!trends) buildTrends();
      const fresh = !trends.isConnected;
      above(trends, table);
      if (fresh && trends.isConnected) refreshTrends();
    }
    if (current !== tab) {
      if (panel && panel.isConnected) panel.remove();
      return;
    }
    if (!panel) build();
    if (!above(panel, table) && !table && !panel.isConnected) {
      panel.classList.add("hammerlab-floating");
      document.body.appendChild(panel);
    }
  }

  // Tab changes are pushState calls: follow clicks at once, and poll for anything else.
  document.addEventListener("click", () => setTimeout(place, 0), true);
  window.addEventListener("popstate", place);
  setInterval(place, 300);
  setInterval(refresh, 1000);
  setInterval(refreshTrends, 1000);
})();
