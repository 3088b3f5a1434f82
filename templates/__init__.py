"""Built-in model specs (TOML), shipped inside the package as prototxt_gen.templates."""
