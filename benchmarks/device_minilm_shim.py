"""Device shim: the carried FP16 copy of all-MiniLM-L6-v2, upcast once to FP32 (as shipped)."""

import shutil
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "all-MiniLM-L6-v2-fp16"
DST = Path("/tmp/all-MiniLM-L6-v2")


def get_model_path() -> str:
    if not (DST / "model.safetensors").is_file():
        from safetensors.torch import load_file, save_file

        DST.mkdir(parents=True, exist_ok=True)
        sd = load_file(SRC / "model.safetensors")
        upcast = {
            k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()
        }
        save_file(upcast, DST / "model.safetensors", metadata={"format": "pt"})
        for f in SRC.iterdir():
            if f.name != "model.safetensors":
                shutil.copy(f, DST / f.name)
    return str(DST)
