// Threshold histogram: a plotly figure whose vertical threshold line the user
// drags with the mouse; the new x goes back to Python.
//
// Streamlit components v1 protocol, written by hand (no npm build):
//   iframe -> parent  {isStreamlitMessage, type: "streamlit:componentReady", apiVersion: 1}
//   parent -> iframe  {type: "streamlit:render", args, theme, ...}   (every rerun)
//   iframe -> parent  {isStreamlitMessage, type: "streamlit:setComponentValue", value, dataType: "json"}
//   iframe -> parent  {isStreamlitMessage, type: "streamlit:setFrameHeight", height}
//
// args: figure (plotly JSON string from ood_dashboard.figures.score_histogram_figure),
//       threshold (number), height (pixels), shape_name (name of the line).
// value sent back: {x: number, event: "<page-load nonce>-<counter>"}; the event id
// makes every drag a new value, even one that lands on the same x twice.
(function () {
  "use strict";

  var CONFIG = {
    displayModeBar: false,
    edits: { shapePosition: true }, // only shapes move; titles, legend, axes stay put
    responsive: true,
    scrollZoom: false,
    doubleClick: false,
    showTips: false,
  };

  var gd = document.getElementById("chart");
  var errorBox = document.getElementById("error");
  var nonce = Math.random().toString(36).slice(2, 10);
  var counter = 0;
  var shapeIndex = -1; // index of the threshold line in layout.shapes
  var currentX = null; // x the line is drawn at
  var applying = false; // true while we relayout the line ourselves
  var listening = false;
  var lastHeight = null;

  function send(type, data) {
    var msg = { isStreamlitMessage: true, type: type };
    for (var k in data) msg[k] = data[k];
    window.parent.postMessage(msg, "*");
  }

  function setHeight(height) {
    if (height !== lastHeight) {
      lastHeight = height;
      send("streamlit:setFrameHeight", { height: height });
    }
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.style.display = "block";
    setHeight(errorBox.offsetHeight + 16);
  }

  function axisRange() {
    var range = gd._fullLayout && gd._fullLayout.xaxis && gd._fullLayout.xaxis.range;
    if (!range) return null;
    return [Math.min(range[0], range[1]), Math.max(range[0], range[1])];
  }

  // plotly_relayout after a shape drag carries "shapes[i].x0" / "x1" / "y0" / "y1".
  // Dragging the body moves x0 and x1 together; dragging an end moves one of
  // them: take whichever moved further, then pin the line back to vertical and
  // full height (y 0..1 in paper coordinates), so only its x can change.
  function onRelayout(ev) {
    if (applying || shapeIndex < 0 || !ev) return;
    var p = "shapes[" + shapeIndex + "].";
    var x0 = ev[p + "x0"];
    var x1 = ev[p + "x1"];
    if (x0 === undefined && x1 === undefined) {
      var shape = ev["shapes[" + shapeIndex + "]"] || (Array.isArray(ev.shapes) && ev.shapes[shapeIndex]);
      if (!shape) return;
      x0 = shape.x0;
      x1 = shape.x1;
    }
    x0 = x0 === undefined ? currentX : Number(x0);
    x1 = x1 === undefined ? currentX : Number(x1);
    var x = Math.abs(x0 - currentX) >= Math.abs(x1 - currentX) ? x0 : x1;
    if (!isFinite(x)) return;
    var range = axisRange();
    if (range) x = Math.min(range[1], Math.max(range[0], x)); // keep it on the chart
    currentX = x;

    var update = {};
    update[p + "x0"] = x;
    update[p + "x1"] = x;
    update[p + "y0"] = 0;
    update[p + "y1"] = 1;
    // Until Python redraws: the new value, on the roomier side (as ood_dashboard/figures.py does).
    update[p + "label.text"] = "threshold " + Number(x.toPrecision(4));
    if (range) update[p + "label.xanchor"] = x <= (range[0] + range[1]) / 2 ? "left" : "right";
    applying = true;
    Promise.resolve(Plotly.relayout(gd, update)).finally(function () {
      applying = false;
    });

    counter += 1;
    send("streamlit:setComponentValue", {
      value: { x: x, event: nonce + "-" + counter },
      dataType: "json",
    });
  }

  // Streamlit's theme (light/dark): text colour and font, and the line label's
  // halo in the page's background colour (ood_dashboard/figures.py defaults it to white).
  function applyTheme(layout, theme) {
    if (!theme) return;
    layout.font = layout.font || {};
    if (theme.textColor) layout.font.color = theme.textColor;
    if (theme.font) layout.font.family = theme.font;
    var shape = shapeIndex >= 0 && layout.shapes[shapeIndex];
    if (theme.backgroundColor && shape && shape.label && shape.label.font) {
      shape.label.font.shadow = "0 0 3px " + theme.backgroundColor;
    }
  }

  function onRender(args, theme) {
    if (typeof Plotly === "undefined") {
      showError("plotly.js did not load (plotly.min.js missing beside index.html); see ood_dashboard/threshold_histogram.py");
      return;
    }
    var fig = JSON.parse(args.figure);
    var layout = fig.layout || {};
    var shapes = layout.shapes || [];
    shapeIndex = -1;
    for (var i = 0; i < shapes.length; i++) {
      if (shapes[i].name === args.shape_name) shapeIndex = i;
    }
    currentX = args.threshold;
    applyTheme(layout, theme);
    setHeight(args.height);
    Plotly.react(gd, fig.data || [], layout, CONFIG).then(function () {
      if (!listening) {
        gd.on("plotly_relayout", onRelayout);
        listening = true;
      }
    });
  }

  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.source !== window.parent || !data || data.type !== "streamlit:render") return;
    try {
      onRender(data.args, data.theme);
    } catch (err) {
      showError("threshold histogram failed to draw: " + err);
    }
  });

  send("streamlit:componentReady", { apiVersion: 1 });
})();
