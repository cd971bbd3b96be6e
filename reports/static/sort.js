// Sortable tables without a framework: click (or Enter on) a header of a table.sortable to sort its rows
// by each cell's data-value; numbers compare numerically, text alphabetically, empty values always last.
(function () {
  "use strict";

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && String(x) !== "NaN") { return x - y; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function sortBy(th) {
    var row = th.parentNode, table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(row.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(row.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var c1 = r1.cells[index], c2 = r2.cells[index];
      var a = c1 ? (c1.getAttribute("data-value") || "") : "";
      var b = c2 ? (c2.getAttribute("data-value") || "") : "";
      if (a === "" || b === "") { return (a === "" ? 1 : 0) - (b === "" ? 1 : 0); }
      return ascending ? compare(a, b) : -compare(a, b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.addEventListener("click", function (event) {
    var th = event.target.closest("table.sortable thead th");
    if (th) { sortBy(th); }
  });
  document.addEventListener("keydown", function (event) {
    var th = event.target.closest && event.target.closest("table.sortable thead th");
    if (th && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); sortBy(th); }
  });
})();
