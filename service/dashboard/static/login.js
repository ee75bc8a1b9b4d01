// The login page: trade a token for the service's HttpOnly cookie, then go back where we were.
import { $, api, el, fill, showError } from "/assets/gentune.js";

/** Only a path of this site: never a link that would send the browser elsewhere. */
function nextPath() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("#login-result");
  fill(result);
  $("#login").disabled = true;
  try {
    const session = await api("/session", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("#token").value.trim() }),
    });
    fill(result, el("div", { class: "notice" }, `Logged in as ${session.name}.`));
    window.location.assign(nextPath());
  } catch (error) {
    showError(result, error);
  } finally {
    $("#login").disabled = false;
  }
});
