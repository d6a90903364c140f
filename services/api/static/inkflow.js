// inkflow web pages: progressive enhancement in plain JavaScript (no build step, no
// framework, no inline script: the Content-Security-Policy forbids it). The pages work
// without it wherever they can; this file adds paying in the page and following a
// booking's status without reloading.
"use strict";

(function () {
  var POLL_MS = 1500;

  function show(el, text) {
    el.textContent = text;
    el.hidden = false;
  }

  // The status badge: poll its fragment until the status changes, then reload the page
  // (which then shows what the new status allows: cancel, reschedule, a refund).
  function followStatus(badge) {
    var url = badge.getAttribute("data-poll");
    var was = badge.getAttribute("data-status-now");
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var now = holder.querySelector("[data-status]");
          if (now && now.getAttribute("data-status") !== was) {
            window.location.reload();
            return;
          }
          window.setTimeout(tick, POLL_MS);
        })
        .catch(function () { window.setTimeout(tick, POLL_MS * 2); });
    }
    window.setTimeout(tick, POLL_MS);
  }

  function waiting(form) {
    form.hidden = true;
    var note = document.getElementById("pay-waiting");
    if (note) { note.hidden = false; }
  }

  // The local Stripe emulator: confirm the PaymentIntent with the publishable key and
  // its client secret, as Stripe.js does (the same request, form-encoded).
  function emulatorPayment(form) {
    var error = document.getElementById("pay-error");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.hidden = true;
      button.disabled = true;
      var number = form.querySelector("[name=card]").value.replace(/\s+/g, "");
      var body = new URLSearchParams();
      body.set("key", form.getAttribute("data-key"));
      body.set("client_secret", form.getAttribute("data-secret"));
      body.set("payment_method_data[type]", "card");
      body.set("payment_method_data[card][number]", number);
      fetch(form.getAttribute("data-endpoint"), { method: "POST", body: body })
        .then(function (r) {
          return r.json().then(function (data) { return { ok: r.ok, data: data }; });
        })
        .then(function (answer) {
          button.disabled = false;
          if (answer.ok) {
            waiting(form);
            return;
          }
          var message = (answer.data && answer.data.error && answer.data.error.message) ||
            "The payment did not go through.";
          show(error, message + " Your time is still held: try again or use another card.");
          form.querySelector("[name=card]").focus();
        })
        .catch(function () {
          button.disabled = false;
          show(error, "The payment service did not answer. Nothing was charged; please try again.");
        });
    });
  }

  // Production: Stripe.js's Payment Element (the script comes from js.stripe.com).
  function stripePayment(form) {
    if (typeof window.Stripe !== "function") { return; }
    var error = document.getElementById("pay-error");
    var button = form.querySelector("button[type=submit]");
    var stripe = window.Stripe(form.getAttribute("data-key"));
    var elements = stripe.elements({ clientSecret: form.getAttribute("data-secret") });
    elements.create("payment").mount("#payment-element");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.hidden = true;
      button.disabled = true;
      stripe.confirmPayment({
        elements: elements,
        confirmParams: { return_url: form.getAttribute("data-return-url") },
        redirect: "if_required"
      }).then(function (result) {
        button.disabled = false;
        if (result.error) {
          show(error, result.error.message + " Your time is still held: try again.");
          return;
        }
        waiting(form);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    var badge = document.querySelector("[data-poll]");
    if (badge) { followStatus(badge); }
    var form = document.getElementById("pay-form");
    if (form && form.getAttribute("data-pay") === "emulator") { emulatorPayment(form); }
    if (form && form.getAttribute("data-pay") === "stripe") { stripePayment(form); }
  });
})();
