"""Reports people read: self-contained HTML pages with every figure embedded (``html``), the faces
they show (``faces``: strips per distortion type, worst errors, grids of chips), and the page for
any evaluation output folder (``folder``)."""
