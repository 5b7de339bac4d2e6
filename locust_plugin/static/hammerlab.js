// Hammerlab's fault control, shown above the Target server table in Locust's web UI.
// Locust's extra tabs are tables only, so this script adds the buttons. They post to the Locust web
// app (/hammerlab/faults), which forwards to the target's /admin/faults when the target is on loopback.
(function () {
  "use strict";
  const me = document.currentScript;
  const base = me.dataset.base || "";
  const tab = me.dataset.tab;
  const FAULTS = [
    { id: "outage", label: "Outage", fields: [["duration_s", "for s", 10]] },
    { id: "error", label: "Errors", fields: [["rate", "rate", 0.5], ["duration_s", "for s", 10]] },
    { id: "reset", label: "Resets", fields: [["rate", "rate", 0.3], ["duration_s", "for s", 10]] },
    { id: "hang", label: "Hangs", fields: [["rate", "rate", 0.2], ["duration_s", "for s", 10]] },
  ];
  let panel = null;
  let message = null;
  let active = null;

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

  function place() {
    const onTab = new URLSearchParams(window.location.search).get("tab") === tab;
    if (!onTab) {
      if (panel && panel.isConnected) panel.remove();
      return;
    }
    if (!panel) build();
    const table = document.querySelector(".MuiTableContainer-root");
    if (table && table.parentNode && panel.nextSibling !== table) {
      panel.classList.remove("hammerlab-floating");
      table.parentNode.insertBefore(panel, table);
    } else if (!table && !panel.isConnected) {
      panel.classList.add("hammerlab-floating");
      document.body.appendChild(panel);
    }
  }

  // Tab changes are pushState calls: follow clicks at once, and poll for anything else.
  document.addEventListener("click", () => setTimeout(place, 0), true);
  window.addEventListener("popstate", place);
  setInterval(place, 300);
  setInterval(refresh, 1000);
})();
