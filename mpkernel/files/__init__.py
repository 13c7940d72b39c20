"""Files on the board: the API the magics use (api.FileSystem; uploads in put, results and
their summaries in results), the board-side programs and the exec method (transfer), the
micro:bit's stream upload (stream), modern firmware's channel (fast), and the pure encodings,
frames and checksums (codec)."""
