// The login page: trade a token for the service's HttpOnly cookie, then go back where we were.
import { $, api, el, fill, showError } from "/assets/gentune.js";

/**
 * Only a page of this site: `next` is resolved the way the browser would resolve it (which
 * drops tabs and newlines and reads backslashes as slashes) and kept only if it lands on this
 * origin; anything else goes home.
 */
function nextPath() {
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  let target;
  try {
    target = new URL(next, window.location.origin);
  } catch {
    return "/";
  }
  if (target.origin !== window.location.origin) return "/";
  return target.pathname + target.search + target.hash;
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
