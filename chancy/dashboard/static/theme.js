// Applies the saved theme before the page is drawn (no flash of the other theme).
(function () {
  try {
    var theme = localStorage.getItem("chancy-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.setAttribute("data-theme", theme);
    }
  } catch (e) { /* storage refused: follow the system */ }
})();
