"""Reports people read: self-contained HTML pages with every figure embedded (``html``), and the
page for any evaluation output folder (``folder``)."""
