"""Project tooling outside the installed library: drawing the bundled samples, downloading COCO."""
