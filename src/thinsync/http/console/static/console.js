// thinsync console: help for the page (F1 and every Help button), the Enter Server Information
// dialog (Enter = OK, Escape = Cancel), and the Manage menu. No framework: htmx does the rest.
(function () {
  "use strict";
  var BASE = "/console";

  function currentHelp() {
    var open = document.querySelectorAll("dialog[open][data-help]");
    return open.length ? open[open.length - 1].getAttribute("data-help") : document.body.getAttribute("data-help");
  }

  function openHelp(page) {
    var dialog = document.getElementById("help-dialog");
    var body = document.getElementById("help-body");
    var url = BASE + "/help/" + encodeURIComponent(page || "home");
    if (!dialog || !body || typeof dialog.showModal !== "function") {
      window.location.href = url;
      return;
    }
    fetch(url + "?fragment=1", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : "<p>There is no help for this page.</p>"; })
      .catch(function () { return "<p>The help could not be loaded.</p>"; })
      .then(function (html) {
        body.innerHTML = html;
        if (!dialog.open) { dialog.showModal(); }
        document.getElementById("help-close").focus();
      });
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "F1") {
      event.preventDefault();
      openHelp(currentHelp());
      return;
    }
    if (event.key === "Escape") {
      var menu = document.querySelector("details.dropdown[open]");
      if (menu) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var help = target.closest("[data-help-open]");
    if (help) {
      event.preventDefault();
      openHelp(help.getAttribute("data-help-open") || currentHelp());
      return;
    }
    var menu = document.querySelector("details.dropdown[open]");
    if (menu && !menu.contains(target)) { menu.open = false; }
    var edit = target.closest("[data-edit-server]");
    if (edit) { openServerDialog(edit); }
    if (target.id === "dlg-cancel") {
      document.getElementById("server-dialog").close("cancel");
    }
  });

  // Enter Server Information: the wizard keeps each server in hidden fields; the dialog edits a copy.
  var PARTS = ["name", "address", "port"];

  function openServerDialog(button) {
    var dialog = document.getElementById("server-dialog");
    var key = button.getAttribute("data-edit-server");
    dialog.setAttribute("data-key", key);
    dialog.querySelector("[data-dialog-role]").textContent = button.getAttribute("data-role");
    PARTS.forEach(function (part) {
      document.getElementById("dlg-" + part).value = document.getElementById(key + "_" + part).value;
    });
    document.getElementById("discover-result").textContent = "";
    dialog.showModal();
    document.getElementById("dlg-name").focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.id !== "server-dialog-form") { return; }
    // OK (the default button, so also Enter in a field): copy the dialog's values to the wizard.
    var dialog = document.getElementById("server-dialog");
    var key = dialog.getAttribute("data-key");
    PARTS.forEach(function (part) {
      var value = document.getElementById("dlg-" + part).value.trim();
      document.getElementById(key + "_" + part).value = value;
      var shown = document.querySelector('[data-show="' + key + "_" + part + '"]');
      if (shown) { shown.textContent = value || "–"; }
    });
  });
})();
