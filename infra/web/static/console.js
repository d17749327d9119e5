// The console's page behaviour. No inline scripts (the Content-Security-Policy forbids
// them); everything here works on the markup the server rendered.
"use strict";

function csrf() { return document.body.dataset.csrf || ""; }

// Live status: each WatchTrunkStatus change arrives as the status cell's new HTML.
function liveStatus() {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.events);
  source.addEventListener("open", () => { live.textContent = "Status: live"; });
  source.addEventListener("error", () => { live.textContent = "Status: reconnecting…"; });
  source.addEventListener("status", (event) => {
    const change = JSON.parse(event.data);
    const cell = document.getElementById("status-" + change.trunk_id);
    if (cell) {
      cell.innerHTML = change.html;
      cell.dataset.updates = String(Number(cell.dataset.updates || 0) + 1);
    }
  });
  source.addEventListener("failed", (event) => {
    live.textContent = "Status: " + JSON.parse(event.data);
    source.close();
  });
}

// The trunk form shows (and sends) only the chosen type's fields.
function typeFields() {
  const form = document.getElementById("trunk-form");
  const type = form && form.querySelector("select[name=type]");
  if (!type) return;
  const apply = () => {
    for (const group of form.querySelectorAll("[data-types]")) {
      const shown = group.dataset.types.split(" ").includes(type.value);
      group.hidden = !shown;
      for (const input of group.querySelectorAll("input, select, textarea")) {
        input.disabled = !shown;
      }
    }
  };
  type.addEventListener("change", apply);
  apply();
}

// Arrow buttons: the keyboard's way to reorder what the mouse drags.
function moveButtons(list) {
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.move");
    if (!button) return;
    const item = button.closest("li");
    if (button.classList.contains("up") && item.previousElementSibling) {
      item.parentNode.insertBefore(item, item.previousElementSibling);
    } else if (button.classList.contains("down") && item.nextElementSibling) {
      item.parentNode.insertBefore(item.nextElementSibling, item);
    }
    button.focus();
  });
}

function codecs() {
  const list = document.getElementById("codecs");
  if (!list) return;
  moveButtons(list);
  // forceFallback: pointer events instead of native drag and drop, which also works with
  // touch screens and with the browser tests' synthetic mouse.
  Sortable.create(list, { handle: ".handle", animation: 0, forceFallback: true });
}

function outboundRoutes() {
  const list = document.querySelector("ol.sortable-routes");
  if (!list) return;
  Sortable.create(list, {
    handle: ".handle", animation: 0, forceFallback: true,
    onEnd: (event) => {
      if (event.oldIndex === event.newIndex) return;
      const body = new URLSearchParams({ csrf: csrf(), position: String(event.newIndex + 1) });
      fetch("/routes/outbound/" + event.item.dataset.route + "/move",
            { method: "POST", body: body, credentials: "same-origin" })
        .then(() => window.location.reload());
    },
  });
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.body.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });
  liveStatus();
  typeFields();
  codecs();
  outboundRoutes();
  confirmations();
});
