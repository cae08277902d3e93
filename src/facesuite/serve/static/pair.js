// Pair page: /verify with both aligned crops, distance drawn against the threshold.
"use strict";

document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const first = document.getElementById("image1").files[0];
  const second = document.getElementById("image2").files[0];
  if (!first || !second) {
    showError("Choose two images.");
    return;
  }
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const data = new FormData();
    data.append("image1", first);
    data.append("image2", second);
    const result = await (await postForm("/verify?images=true", data)).json();
    document.getElementById("crop1").src = result.crops[0];
    document.getElementById("crop2").src = result.crops[1];
    const verdict = document.getElementById("verdict");
    verdict.textContent = result.same ? "Same person" : "Different people";
    verdict.className = `verdict ${result.same ? "same" : "different"}`;
    const width = 420;
    document.getElementById("threshold-mark").style.left = `${Math.min(result.threshold, 1) * width}px`;
    document.getElementById("distance-mark").style.left = `${Math.min(result.distance, 1) * width}px`;
    fillTable(document.getElementById("fields"), [
      ["distance", result.distance.toFixed(4)],
      ["threshold", `${result.threshold.toFixed(4)} (${result.threshold_source})`],
      ["face found", result.fallback.map((f) => (f ? "no (centre box)" : "yes")).join(" / ")],
    ]);
    document.getElementById("result").classList.remove("hidden");
  } catch (error) {
    document.getElementById("result").classList.add("hidden");
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});
