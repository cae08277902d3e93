// Helpers shared by the dashboard pages: JSON requests with the API's {"error": ...} messages.
"use strict";

async function apiError(response) {
  try {
    const body = await response.json();
    return new Error(body.error || `HTTP ${response.status}`);
  } catch (_) {
    return new Error(`HTTP ${response.status}`);
  }
}

// A write (POST, DELETE) with the API key when the server asks for one (401): the key is asked
// once per tab and kept in sessionStorage, never in the page's URL.
async function request(method, url, options = {}) {
  const send = () => fetch(url, { ...options, method,
    headers: { ...(options.headers || {}), "X-API-Key": sessionStorage.getItem("facesuite-api-key") || "" } });
  let response = await send();
  if (response.status === 401) {
    const key = window.prompt("This server needs its API key for this action:");
    if (key) {
      sessionStorage.setItem("facesuite-api-key", key);
      response = await send();
    }
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

async function post(url, options) {
  return request("POST", url, options);
}

async function postForm(url, formData) {
  return post(url, { body: formData });
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.classList.toggle("hidden", !message);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function fillTable(table, entries) {
  table.replaceChildren();
  for (const [key, value] of entries) {
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = key;
    row.appendChild(th);
    cell(row, value === null || value === undefined ? "—" : String(value));
    table.appendChild(row);
  }
}

// Marks the current page's link in the header.
document.querySelectorAll("header a").forEach((a) => {
  if (a.getAttribute("href") === location.pathname) a.classList.add("active");
});
