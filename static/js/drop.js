// The drop page: its state in plain words, the card, join (proof-of-work solved here), live position over the websocket
// with reconnect and backoff, polling while the socket is down, and one-click buy.
import { CARD_COUNTS, declineText, finishThreeDSecure, giveCard, loadStripe } from "./payments.js";
import { STATE_LABELS } from "./site.js";

const root = document.getElementById("drop");
const slug = root.dataset.slug;
const $ = (id) => document.getElementById(id);
const api = `/api/drops/${slug}`;

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function call(method, url, body, headers = {}) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? {} : await response.json();
  return { status: response.status, data, headers: response.headers };
}

// --- riding out an outage ------------------------------------------------------------------------
// A 503 (the sale's store briefly away, or being rebuilt) and a 429 say when to ask again (Retry-After);
// no answer at all (the network, a proxy's HTML error page) is treated the same, and so is a proxy's 408
// (the request never reached a server). The shopper keeps their place meanwhile, and the page says so
// instead of showing an error.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const RETRYABLE = new Set([0, 408, 429, 503]);
let outage = false;

function retryDelay(result, attempt) {
  const named = Number(result.headers ? result.headers.get("Retry-After") : NaN);
  const base = Number.isFinite(named) && named > 0 ? named * 1000 : 2000;
  return Math.min(30000, base * 2 ** Math.min(attempt, 4)) + Math.random() * 500;
}

function outageSay(ms) {
  outage = true;
  say(`The sale is catching up; you keep your place. Checking again in ${Math.max(1, Math.round(ms / 1000))} s.`);
}

async function callSafely(method, url, body, headers) {
  try {
    return await call(method, url, body, headers);
  } catch (err) {
    console.warn(`${method} ${url}: no answer`, err);
    return { status: 0, data: {}, headers: null };
  }
}

// Send again after a 503, a 429 or no answer (at most `tries` times), waiting as the server asks.
async function callPatiently(method, url, body, { tries = 10, headers } = {}) {
  let result;
  for (let attempt = 0; attempt < tries; attempt++) {
    result = await callSafely(method, url, body, headers);
    if (!RETRYABLE.has(result.status)) return result;
    const wait = retryDelay(result, attempt);
    outageSay(wait);
    await sleep(wait);
  }
  return result;
}

function say(text) { $("status").textContent = text; }
function fail(data) {
  $("error").textContent = data?.error?.message || "The shop is not answering; try again in a minute.";
  if (!lastEntry) say("");  // drop a "checking…" that no longer applies
}

// --- drop and entry rendering -------------------------------------------------------------------
let lastEntry = null;
let checkoutTimer = null;
function renderDrop(frame) {
  const state = $("state");
  state.textContent = STATE_LABELS[frame.state] || frame.state;
  state.className = `badge badge-${frame.state}`;
  $("remaining").textContent = frame.remaining;
  $("paused-note").hidden = frame.state !== "paused";
  const was = root.dataset.state;
  root.dataset.state = frame.state;
  // The websocket's drop frame carries `serving`; GET /api/drops/<slug> (polling) has it under `queue`.
  const serving = frame.serving ?? frame.queue?.serving;
  if (lastEntry && lastEntry.ticket && lastEntry.status === "waiting" && Number.isFinite(serving)) {
    if (serving >= lastEntry.ticket) entryMissed();
    else renderEntry({ ...lastEntry, serving, position: lastEntry.ticket - serving });
  }
  // The start draws the pre-queue's places: read ours at once rather than at the next poll.
  if (lastEntry && lastEntry.status === "prequeue" && was !== frame.state) entryMissed(true);
  if (frame.state === "paused" && was !== "paused" && lastEntry && lastEntry.status === "waiting") {
    say(`The shop has paused the drop. You keep your place (number ${lastEntry.position}); admission picks up where it stopped.`);
  }
  if ((frame.state === "sold_out" || frame.state === "ended") && lastEntry?.status !== "purchased") {
    if (lastEntry) renderEntry({ ...lastEntry, status: frame.state });
    else if ($("join-section")) closeShopping(frame.state === "sold_out" ? "Sold out: every unit has found a buyer." : "This drop has ended.");
  }
}

// One state at a time: once the shopper's story with this drop is over, the card and the queue steps go.
function closeShopping(text) {
  for (const id of ["card-section", "join-section", "progress", "progress-label", "buy"]) {
    if ($(id)) $(id).hidden = true;
  }
  if (text) say(text);
}

// Admission reached the shopper's ticket but no entry frame said so (sent while the server's
// subscriber was reconnecting, say): read the entry, at most every two seconds.
let entryReadAt = 0;
async function entryMissed(now = false) {
  if (!now && Date.now() - entryReadAt < 2000) return;
  entryReadAt = Date.now();
  const entry = await callSafely("GET", `${api}/queue`);
  if (entry.status === 200) renderEntry(entry.data);
}

function renderEntry(entry) {
  // After an outage message, say the shopper's state again even if it did not change.
  const previous = outage ? null : lastEntry && lastEntry.status;
  outage = false;
  lastEntry = entry;
  const buy = $("buy"), progress = $("progress");
  $("join-section").hidden = true;
  progress.hidden = $("progress-label").hidden = entry.status !== "waiting";
  buy.hidden = entry.status !== "admitted";
  if (entry.status === "prequeue") {
    say(root.dataset.state === "prequeue" || root.dataset.state === "scheduled"
      ? "You are in the waiting room. When the sale starts, everyone here gets a fairly drawn place."
      : "The sale has started: your place is being drawn…");
  }
  if (entry.status === "waiting") {
    const done = entry.ticket ? Math.min(100, Math.round((100 * entry.serving) / entry.ticket)) : 0;
    progress.value = done;
    const eta = entry.eta_seconds == null ? "" : ` About ${entry.eta_seconds} s to go.`;
    say(`You are number ${entry.position} in line.${eta}`);
  }
  if (entry.status === "admitted") {
    const until = entry.admission_expires_at ? Date.parse(entry.admission_expires_at) : null;
    if (previous !== "admitted") {
      say(until ? `You're in! Buy before ${new Date(until).toLocaleTimeString()}.` : "You're in! Buy now.");
      buy.focus();
      clearInterval(checkoutTimer);
      // The countdown ticks outside the live region, so screen readers are not told every second.
      const show = () => {
        const left = Math.max(0, Math.round((until - Date.now()) / 1000));
        $("checkout-left").textContent = `${Math.floor(left / 60)}m ${left % 60}s left to buy`;
      };
      if (until) { show(); checkoutTimer = setInterval(show, 1000); }
    }
  } else {
    clearInterval(checkoutTimer);
    $("checkout-left").textContent = "";
  }
  if (entry.status === "payment_required") {
    if (previous !== "payment_required") paymentRequired(entry);
  } else if (previous === "payment_required") {
    $("card-status").textContent = "Your card is held. You keep your place.";
  }
  if (entry.status === "expired") closeShopping("Your turn has passed, and your card hold is being released.");
  if (entry.status === "purchased") { closeShopping("Bought! Your order is confirmed."); $("orders-link").hidden = false; }
  if (entry.status === "sold_out") closeShopping("Sold out: every unit has found a buyer. Your card hold is being released.");
  if (entry.status === "ended") closeShopping("This drop has ended. Your card hold is being released.");
}

// --- live updates: websocket first, polling while it is down -----------------------------------
let socket = null, backoff = 500, pollTimer = null, pollRun = 0, pollRuns = 0;
// While the socket is down, read again soon when admission is near and seldom when it is far:
// a quarter of the ETA, between 2 and 30 seconds.
function pollDelay() {
  const eta = lastEntry ? lastEntry.eta_seconds : null;
  return eta == null ? 2000 : Math.min(30000, Math.max(2000, (eta * 1000) / 4));
}
function startPolling() {
  if (pollRun) return;
  const run = (pollRun = ++pollRuns);
  let failures = 0;
  const poll = async () => {
    let delay = pollDelay();
    try {
      const drop = await callSafely("GET", api);
      if (drop.status === 200) renderDrop(drop.data);
      let entry = null;
      if (lastEntry) {
        entry = await callSafely("GET", `${api}/queue`);
        if (entry.status === 200) renderEntry(entry.data);
        else if (entry.status === 404 && entry.data?.error?.code === "not_in_queue") placeLost();
      }
      const failed = [drop, entry].find((result) => result && RETRYABLE.has(result.status));
      if (failed) {
        // Back off while the sale is away (as long as it asks, doubling), and tell the shopper why.
        delay = Math.max(delay, retryDelay(failed, failures++));
        if (lastEntry) outageSay(delay);
      } else failures = 0;
    } finally {
      if (pollRun === run) pollTimer = setTimeout(poll, delay);
    }
  };
  pollTimer = setTimeout(poll, pollDelay());
}
function stopPolling() { clearTimeout(pollTimer); pollTimer = null; pollRun = 0; }

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/drops/${slug}/`);
  socket.onopen = () => { backoff = 500; stopPolling(); };
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "drop") renderDrop(frame);
    if (frame.type === "entry") renderEntry(frame);
  };
  socket.onclose = (event) => {
    if (event.code === 4401 || event.code === 4404) return;
    if (event.code === 4429) { startPolling(); return; }  // too many tabs open on this drop: this one polls
    startPolling();
    setTimeout(connect, backoff + Math.random() * backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
}

// --- join: proof-of-work, fingerprint, queue ----------------------------------------------------
async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// The ALTCHA widget (vendored from npm) fetches the challenge and solves it in web workers.
function proofOfWork() {
  const widget = $("pow");
  return new Promise((resolve, reject) => {
    const onState = (event) => {
      const { state, payload } = event.detail;
      if (state === "verified") {
        widget.removeEventListener("statechange", onState);
        resolve(payload);
      } else if (state === "error" || state === "expired") {
        widget.removeEventListener("statechange", onState);
        reject(new Error(`proof-of-work ${state}`));
      }
    };
    widget.addEventListener("statechange", onState);
    widget.reset();
    widget.verify();
  });
}

// A device fingerprint from stable browser signals, hashed (the raw signals never leave the page).
async function fingerprint() {
  const canvas = document.createElement("canvas");
  const gl = canvas.getContext("webgl");
  const renderer = gl ? gl.getParameter(gl.RENDERER) : "";
  const stable = [navigator.userAgent, navigator.language, (navigator.languages || []).join(","), screen.width,
                  screen.height, screen.colorDepth, Intl.DateTimeFormat().resolvedOptions().timeZone,
                  navigator.hardwareConcurrency, navigator.platform, renderer].join("|");
  return sha256Hex(stable);
}

// What an automated browser tends to give away; the server weighs these into a suspicion score.
function automationSignals() {
  return {
    webdriver: navigator.webdriver === true,
    headless: /HeadlessChrome/.test(navigator.userAgent),
    languages: (navigator.languages || []).length,
  };
}

// The place was lost with the sale's store (a join made in the second before it failed, not yet saved):
// join again at once, with a new proof-of-work. Once per page: a second loss shows the Join button.
let rejoined = false;
function placeLost() {
  if (rejoined) {
    lastEntry = null;
    $("join-section").hidden = false;
    say("Your place in line was lost. Press Join to queue again.");
    return;
  }
  rejoined = true;
  say("Your place in line was lost while the sale restarted. Joining again…");
  join();
}

async function join() {
  $("error").textContent = "";
  $("join").disabled = true;
  say("Checking you are not a bot…");
  try {
    const body = { altcha: await proofOfWork(), fingerprint: await fingerprint(), signals: automationSignals() };
    const joined = await callPatiently("POST", `${api}/queue`, body);
    if (joined.status === 200 || joined.status === 201) renderEntry(joined.data);
    else {
      // The widget must not say "Verified" next to a refusal.
      const widget = $("pow");
      if (typeof widget.setState === "function") widget.setState("error", joined.data?.error?.message || "Refused");
      if (joined.status === 402) { cardHeld = false; $("hold").hidden = false; }
      fail(joined.data);
    }
  } catch (err) {
    fail({ error: { message: "The bot check did not finish; press Join again." } });
  } finally {
    $("join").disabled = !cardHeld;
  }
}

// One key per press of Buy: the same press sent again (after a 503 or no answer) is the same purchase.
async function buy() {
  $("buy").disabled = true;
  const key = `page-${crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`}`;
  let bought = await callPatiently("POST", `${api}/purchase`, {}, { headers: { "Idempotency-Key": key } });
  // In flight when the sale's store went away: it is being finished (paid, or refunded); ask again.
  for (let wait = 0; wait < 30 && bought.data?.error?.code === "purchase_in_progress"; wait++) {
    say("Finishing your purchase…");
    await sleep(2000);
    bought = await callPatiently("POST", `${api}/purchase`, {}, { headers: { "Idempotency-Key": key } });
  }
  $("buy").disabled = false;
  if (bought.status === 200 || bought.status === 201) renderEntry({ ...lastEntry, status: "purchased" });
  else if (bought.status === 403 && bought.data?.error?.code === "not_admitted") {
    // The admission was lost (Redis lost its last second): the place is kept and admitted again.
    const entry = await callSafely("GET", `${api}/queue`);
    if (entry.status === 200 && entry.data.status === "waiting") {
      renderEntry(entry.data);
      say("Your turn was lost in an outage; your place in line is kept and you will be admitted again shortly.");
    } else fail(bought.data);
  } else fail(bought.data);
}

// --- the card (before the queue) -------------------------------------------------------------------
// Giving the card keeps it for the drop; its hold is placed just before the shopper's turn. If that hold
// fails or asks for 3-D Secure, the entry turns payment_required: the shopper confirms or gives another
// card within their checkout window and keeps their place.
let stripe = null;
let cardElement = null;
let cardHeld = false;

async function stripeReady() {
  if (!stripe) {
    const section = $("card-section");
    stripe = await loadStripe(section.dataset.stripeJs, section.dataset.stripeKey);
    if ($("card-element")) {
      cardElement = stripe.elements().create("card");
      cardElement.mount("#card-element");
    }
  }
  return stripe;
}

function showCard(auth) {
  if (outage && !lastEntry) { outage = false; say(""); }  // the card step got through after all
  const counts = CARD_COUNTS.has(auth.status);
  cardHeld = counts;
  const card = auth.card ? `${auth.card.brand} ending ${auth.card.last4}` : "your card";
  const texts = {
    scheduled: "Card saved. It is held (not charged) just before your turn, so buying takes one click.",
    authorized: `Held on ${card}. Buying takes one click.`,
    requires_action: "Your bank asks you to confirm this card.",
    captured: `Paid with ${card}.`,
  };
  $("card-status").textContent = texts[auth.status] || (auth.decline_code ? `${declineText(auth.decline_code)} Try another card.` : "Give a card to join the queue.");
  $("hold").hidden = counts;
  if ($("card")) $("card").disabled = counts;
  if (!lastEntry) $("join").disabled = !counts;
}

async function paymentRequired(entry) {
  say(`${declineText(entry.decline_code)} Confirm it or give another card to keep your place.`);
  const auth = await callSafely("GET", `${api}/authorization`);
  // A refused hold (declined, or the card over its accounts limit) has no open authorization left: the
  // shopper is asked for another card all the same.
  if (auth.status === 200 && auth.data.status === "requires_action" && auth.data.client_secret) {
    await stripeReady();
    const done = await finishThreeDSecure({ api, call, stripe, clientSecret: auth.data.client_secret });
    if (done.status === 200) { showCard(done.data); if (done.data.status === "authorized") say("Card confirmed. You keep your place."); return; }
    fail(done.data);
  }
  // Let the shopper give another card.
  cardHeld = false;
  $("hold").hidden = false;
  $("hold").textContent = "Use this card";
  if ($("card")) $("card").disabled = false;
  $("card-status").textContent = `${declineText(entry.decline_code)} Give another card to keep your place.`;
}

async function paymentMethod() {
  if ($("card")) return $("card").value;
  const result = await stripe.createPaymentMethod({ type: "card", card: cardElement });
  if (result.error) throw new Error(result.error.message);
  return result.paymentMethod.id;
}

async function hold() {
  $("error").textContent = "";
  $("hold").disabled = true;
  try {
    await stripeReady();
    const result = await giveCard({ api, call: callPatiently, paymentMethod: await paymentMethod() });
    if (result.status === 200 || result.status === 202) {
      showCard(result.data);
      if (lastEntry && lastEntry.status === "payment_required") say("Card saved. You keep your place.");
    } else fail(result.data);
  } catch (err) {
    fail({ error: { message: err.message } });
  } finally {
    $("hold").disabled = false;
  }
}

if (root.dataset.signedIn === "1" && $("card-section")) {
  $("hold").addEventListener("click", hold);
  call("GET", `${api}/authorization`).then((auth) => {
    if (auth.status === 200) showCard(auth.data);
    else $("join").disabled = true;
  });
  if ($("card-element")) stripeReady();
  $("join").addEventListener("click", join);
  $("buy").addEventListener("click", buy);
  call("GET", "/api/session");  // sets the csrftoken cookie
  callPatiently("GET", `${api}/queue`).then((entry) => { if (entry.status === 200) renderEntry(entry.data); });
  connect();
}
