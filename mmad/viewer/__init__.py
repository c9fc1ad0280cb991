"""The HTML viewer of one video with its detections (``mmad view``, ``mmad detect --html``).

:func:`write_viewer_page` injects a video's data as JSON into the page template of this package
(``template.html``: plain HTML, CSS and JavaScript, no framework), giving one file that opens
from the file system without a server or the network.
"""

from mmad.viewer.page import read_detections, read_ground_truth, render_page, write_viewer_page

__all__ = ["read_detections", "read_ground_truth", "render_page", "write_viewer_page"]
