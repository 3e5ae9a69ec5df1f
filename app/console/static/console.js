// bunsync console: the one script. Pages work without it; it only adds local times on hover.
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (!isNaN(d)) { el.title = el.textContent + " = " + d.toLocaleString() + " local time"; }
});
