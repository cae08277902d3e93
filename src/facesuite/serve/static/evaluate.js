// Evaluate page: start a recognition job, poll its status for the progress bar, show the report.
"use strict";

const POLL_MS = 500;
// Each figure of a job (its key in job.metrics) as a user reads it, and how its value is shown.
const percent = (value) => `${(100 * value).toFixed(1)}%`;
const FIGURES = [
  ["top1", "identification: searches whose nearest gallery face is the right person", percent],
  ["tar_at_far_1pct", "verification: accepted genuine pairs at 1% false accepts", percent],
  ["auc", "verification: area under the ROC curve (1 = genuine and impostor pairs fully apart)", (value) => value.toFixed(4)],
  ["coverage", "at the operating point: searches answered with a name", percent],
  ["wrong_identity_rate", "at the operating point: searches answered with a wrong name", percent],
  ["fpir", "at the operating point: strangers (own identity left out) answered with a name (FPIR)", percent],
  ["probes", "probe images searched", String],
  ["identities", "identities in the gallery", String],
  ["skipped", "images skipped (could not be read)", String],
];

function describeMetrics(metrics) {
  return FIGURES.filter(([key]) => key in metrics).map(([key, label, format]) => [label, format(metrics[key])]);
}

async function poll(id) {
  const response = await fetch(`/jobs/${id}`);
  if (!response.ok) throw await apiError(response);
  const job = await response.json();
  const bar = document.getElementById("progress");
  bar.max = Math.max(job.total, 1);
  bar.value = job.done;
  document.getElementById("progress-text").textContent =
    `${job.state}: ${job.done}/${job.total} images, ${job.seconds} s — ${job.message}`;
  if (job.state === "failed") throw new Error(job.message);
  if (job.state !== "done") {
    setTimeout(() => poll(id).catch(finish), POLL_MS);
    return;
  }
  bar.value = bar.max;
  fillTable(document.getElementById("metrics"), describeMetrics(job.metrics));
  const link = document.getElementById("report-link");
  link.href = job.report_url;
  link.classList.remove("hidden");
  const frame = document.getElementById("report");
  frame.src = job.report_url;
  frame.classList.remove("hidden");
  finish(null);
}

function finish(error) {
  document.getElementById("submit").disabled = false;
  if (error) showError(error.message);
}

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  document.getElementById("submit").disabled = true;
  for (const id of ["report-link", "report"]) document.getElementById(id).classList.add("hidden");
  document.getElementById("metrics").replaceChildren();
  const split = document.getElementById("split").value.trim();
  try {
    const response = await post("/jobs/recognition", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ folder: document.getElementById("folder").value.trim(), split: split || null }),
    });
    const job = await response.json();
    document.getElementById("status").classList.remove("hidden");
    await poll(job.id);
  } catch (error) {
    finish(error);
  }
});
