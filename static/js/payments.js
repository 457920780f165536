// Card hold for a drop, as the API contract describes it, for any page that has a `call` helper
// (method, url, body) -> {status, data} sending the CSRF header.
//
//   import { holdCard, loadStripe } from "./payments.js";
//   const stripe = await loadStripe(jsUrl, publishableKey);   // payments.selectors.stripe_js_config()
//   const result = await holdCard({ api, call, stripe, paymentMethod: "pm_card_visa", onBusy: say });
//
// 201/200 authorized -> done; 202 requires_action -> Stripe.js runs 3-D Secure with the client secret
// (localstripe's fake Stripe.js shows its own confirm/cancel dialog), then the hold is read back;
// 503 payments_busy -> the shared Stripe rate limit is full: wait Retry-After and try again.

export function loadStripe(jsUrl, publishableKey) {
  return new Promise((resolve, reject) => {
    if (window.Stripe) return resolve(window.Stripe(publishableKey));
    const script = document.createElement("script");
    script.src = jsUrl;
    script.onload = () => resolve(window.Stripe(publishableKey));
    script.onerror = () => reject(new Error("Stripe.js did not load"));
    document.head.appendChild(script);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function holdCard({ api, call, stripe, paymentMethod, onBusy = () => {}, maxTries = 20 }) {
  for (let attempt = 0; attempt < maxTries; attempt++) {
    const auth = await call("POST", `${api}/authorization`, { payment_method: paymentMethod });
    if (auth.status === 200 || auth.status === 201) {
      if (auth.data.status !== "requires_action") return auth;
      if (!auth.data.client_secret) return auth;
      return finishThreeDSecure({ api, call, stripe, clientSecret: auth.data.client_secret });
    }
    if (auth.status === 202) return finishThreeDSecure({ api, call, stripe, clientSecret: auth.data.client_secret });
    if (auth.status === 503 && auth.data.error && auth.data.error.code === "payments_busy") {
      const wait = Number(auth.headers?.get?.("Retry-After") || 2);
      onBusy(`Card payments are busy right now; trying again in ${wait} s…`);
      await sleep(wait * 1000);
      continue;
    }
    return auth; // 402 card_declined, 409 drop_closed, 400 ...
  }
  return { status: 503, data: { error: { code: "payments_busy", message: "Card payments stayed busy; try later." } } };
}

async function finishThreeDSecure({ api, call, stripe, clientSecret }) {
  const result = await stripe.confirmCardPayment(clientSecret);
  if (result.error) {
    return { status: 402, data: { error: { code: "card_declined", message: result.error.message || "3-D Secure failed." } } };
  }
  return call("GET", `${api}/authorization`);
}
