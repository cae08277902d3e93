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

async function postForm(url, formData) {
  const response = await fetch(url, { method: "POST", body: formData });
  if (!response.ok) throw await apiError(response);
  return response;
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
