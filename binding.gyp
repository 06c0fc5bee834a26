{
  "targets": [
    {
      "target_name": "redo_map",
      "sources": ["native/redo_map.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
