// The merchandiser's live dashboard: figures every second, server-drawn SVG charts every two.
const root = document.getElementById("dashboard");

function pick(data, path) {
  return path.split(".").reduce((value, key) => (value == null ? value : value[key]), data);
}

async function refresh() {
  try {
    const response = await fetch(root.dataset.json, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    for (const element of root.querySelectorAll("[data-field]")) {
      const value = pick(data, element.dataset.field);
      element.textContent = value == null ? "–" : value;
    }
  } catch (err) {
    // a missed refresh is retried on the next tick
  }
}

function refreshCharts() {
  for (const image of root.querySelectorAll("img[data-chart]")) {
    const url = new URL(image.src);
    url.searchParams.set("t", Date.now());
    image.src = url.toString();
  }
}

function countdown() {
  const startsAt = Date.parse(root.dataset.startsAt);
  const left = Math.round((startsAt - Date.now()) / 1000);
  document.getElementById("countdown").textContent =
    left > 0 ? `starts in ${Math.floor(left / 60)}m ${left % 60}s` : `started ${Math.floor(-left / 60)}m ago`;
}

setInterval(refresh, 1000);
setInterval(refreshCharts, 2000);
setInterval(countdown, 1000);
countdown();
