// The card step for a drop, as the API contract describes it, for any page that has a `call` helper
// (method, url, body) -> {status, data} sending the CSRF header.
//
//   import { giveCard, finishThreeDSecure, loadStripe } from "./payments.js";
//   const stripe = await loadStripe(jsUrl, publishableKey);   // payments.selectors.stripe_js_config()
//   const result = await giveCard({ api, call, paymentMethod: "pm_card_visa" });
//
// The card is kept at once (202 scheduled, or 200 for the card already given): no charge, no hold yet.
// Its hold is placed in queue order just before the shopper's turn; when that hold needs 3-D Secure
// (the entry turns payment_required), finishThreeDSecure runs it with the client secret (localstripe's
// fake Stripe.js shows its own confirm/cancel dialog), then reads the card back.

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

// Statuses with which the card counts for joining the queue.
export const CARD_COUNTS = new Set(["scheduled", "requires_action", "authorized"]);

export async function giveCard({ api, call, paymentMethod }) {
  return call("POST", `${api}/authorization`, { payment_method: paymentMethod });
}

export async function finishThreeDSecure({ api, call, stripe, clientSecret }) {
  const result = await stripe.confirmCardPayment(clientSecret);
  if (result.error) {
    return { status: 402, data: { error: { code: "card_declined", message: result.error.message || "3-D Secure failed." } } };
  }
  return call("GET", `${api}/authorization`);
}

// What a decline code means for the shopper, in plain words.
export function declineText(code) {
  const texts = {
    card_declined: "Your bank declined the card.",
    authentication_required: "Your bank asks you to confirm this card.",
    authentication_failed: "The card could not be confirmed.",
    card_limit: "This card is already used by another account for this drop.",
    payment_method_unknown: "This card is not known to our payment provider.",
  };
  return texts[code] || "The card could not be held.";
}
