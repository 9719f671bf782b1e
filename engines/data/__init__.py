"""Images: reading them safely, their limits, and the bundled samples."""
