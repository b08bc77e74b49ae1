/* Progressive enhancement only: the widget works without it. When a category is chosen,
   open the matching 3R script and close the others. */
(function () {
  "use strict";
  document.querySelectorAll(".recovery-widget").forEach(function (widget) {
    var select = widget.querySelector(".recovery-category-select");
    if (!select) { return; }
    select.addEventListener("change", function () {
      widget.querySelectorAll(".recovery-scripts details").forEach(function (details) {
        details.open = details.getAttribute("data-category") === select.value;
      });
    });
  });
})();
