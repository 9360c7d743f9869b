"""Print, as JSON, the open-mmlab:// name -> URL table mmengine's checkpoint loader uses (run
with the .venv-mmseg python)."""
import json

from mmengine.runner.checkpoint import get_external_models

print(json.dumps(get_external_models()))
