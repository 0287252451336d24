// framefarm pages: the little the server cannot do. No build step; htmx does the rest.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)framefarm_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// Requests that change something and ride on the session cookie must echo the CSRF token.
document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
});

// A failed htmx request shows the server's {"code", "message"} instead of failing silently.
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let message = `The manager answered ${xhr.status}.`;
  try { message = JSON.parse(xhr.responseText).message || message; } catch (_) { /* not JSON */ }
  showFlash(message, "error");
});

document.addEventListener("htmx:afterRequest", (event) => {
  const source = event.detail.elt;
  if (source && source.dataset.after === "signout" && event.detail.successful) {
    window.location.assign("/signin");
  }
});

function showFlash(message, kind) {
  const area = document.getElementById("flash");
  if (!area) return;
  const box = document.createElement("div");
  box.className = `flash ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const text = document.createElement("span");
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => box.remove());
  box.append(text, close);
  area.replaceChildren(box);
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.message || `The manager answered ${response.status}.`;
  } catch (_) {
    return `The manager answered ${response.status}.`;
  }
}

// Submit: the job type's fields become the settings JSON; the job goes to POST /api/jobs.
function settingsOf(fieldset) {
  const settings = {};
  for (const input of fieldset.querySelectorAll("[data-setting]")) {
    const key = input.dataset.setting;
    const type = input.dataset.type;
    if (type === "bool") { settings[key] = input.checked; continue; }
    if (input.value === "") continue;
    settings[key] = type === "int32" ? parseInt(input.value, 10)
      : type === "float" ? parseFloat(input.value) : input.value;
  }
  return settings;
}

function showJobType(form) {
  const chosen = form.querySelector("#job-type").value;
  for (const fieldset of form.querySelectorAll("fieldset[data-job-type]")) {
    const on = fieldset.dataset.jobType === chosen;
    fieldset.hidden = !on;
    fieldset.disabled = !on;
  }
}

function wireSubmit(form) {
  form.addEventListener("change", (event) => {
    if (event.target.id === "job-type") showJobType(form);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const error = document.getElementById("submit-error");
    error.hidden = true;
    const chosen = form.querySelector("#job-type").value;
    const fieldset = form.querySelector(`fieldset[data-job-type="${chosen}"]`);
    const data = new FormData();
    data.append("file", document.getElementById("blend-file").files[0]);
    data.append("type", chosen);
    data.append("type_etag", fieldset.dataset.etag);
    data.append("settings", JSON.stringify(settingsOf(fieldset)));
    for (const name of ["name", "priority", "tag"]) {
      const value = form.elements[name].value.trim();
      if (value !== "") data.append(name, value);
    }
    button.disabled = true;
    button.textContent = "Uploading…";
    const response = await fetch("/api/jobs", {
      method: "POST", body: data, headers: { "X-CSRF-Token": csrfToken() },
    });
    if (response.ok) {
      const job = await response.json();
      window.location.assign(`/jobs/${job.id}`);
      return;
    }
    button.disabled = false;
    button.textContent = "Submit job";
    error.textContent = await errorMessage(response);
    error.hidden = false;
    error.focus();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const submit = document.getElementById("submit-form");
  if (submit) wireSubmit(submit);
});

// A log tail shows its newest lines.
function scrollLogs() {
  for (const log of document.querySelectorAll("pre.log")) log.scrollTop = log.scrollHeight;
}
document.addEventListener("DOMContentLoaded", scrollLogs);
document.addEventListener("htmx:afterSettle", scrollLogs);

// The job fields arrive by htmx once the .blend has been read.
document.addEventListener("htmx:afterSettle", () => {
  const submit = document.getElementById("submit-form");
  if (submit && submit.querySelector("#job-type")) showJobType(submit);
});

// Bulk cancel and delete ask first: they reach every ticked job at once.
document.addEventListener("htmx:confirm", (event) => {
  const form = event.detail.elt;
  if (form.id !== "bulk-form") return;
  const action = form.elements.action.value;
  if (action !== "delete" && action !== "cancel") return;
  event.preventDefault();
  const count = form.querySelectorAll("input[name=job_id]:checked").length;
  const what = action === "delete" ? "Delete" : "Cancel";
  if (window.confirm(`${what} ${count} job(s)? ${action === "delete" ? "Their frames go too." : ""}`)) {
    event.detail.issueRequest(true);
  }
});
