/* Filter and sort the query table in the page; no network, no library. */
(function () {
  "use strict";
  var table = document.getElementById("queries");
  var body = table.tBodies[0];
  var filters = Array.prototype.slice.call(document.querySelectorAll("[data-filter]"));
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");

  function matches(row) {
    var ok = filters.every(function (select) {
      if (!select.value) { return true; }
      return select.value.split("|").indexOf(row.getAttribute("data-" + select.getAttribute("data-filter"))) >= 0;
    });
    var text = search.value.trim().toLowerCase();
    return ok && (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
  }

  function apply() {
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      row.hidden = !matches(row);
      if (!row.hidden) { count += 1; }
    });
    shown.textContent = String(count);
  }

  function sortBy(header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = header.getAttribute("data-type") === "number";
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var cell = row.cells[column];
      return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b), order;
      if (numeric) {
        order = (x === "" ? Infinity : Number(x)) - (y === "" ? Infinity : Number(y));
        if (isNaN(order)) { order = 0; }
      } else {
        order = x.localeCompare(y, undefined, { numeric: true });
      }
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
    header.addEventListener("click", function () { sortBy(header, column); });
  });
  filters.forEach(function (select) { select.addEventListener("change", apply); });
  search.addEventListener("input", apply);
  apply();
}());
