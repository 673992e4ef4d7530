"""``python -m spml_train recipe=NAME key=value ...``: run every stage of one recipe.

Stages (``spml_train/pipeline.py``): cam (tags, boxes) -> stage1 (SPML) ->
pseudo1 (random walk + dense CRF) -> stage2 (a fresh head on the frozen
embedding) [-> pseudo2 -> stage2b for tags]. Each is cached in
``RUN_DIR/stages/NAME-KEY`` (KEY: a hash of its settings and inputs), so a rerun
resumes at the first stage not done; ``stage2.enabled=false`` stops after stage 1.
Recipes live in ``recipes/`` (``python -m spml_train --help`` lists them);
``torchrun --nproc-per-node N -m spml_train recipe=...`` trains stage 1
data-parallel; ``run.dir=PATH`` chooses the run directory (default: Hydra's
output directory, a new timestamped folder per run: pass ``run.dir`` to resume). ``RUN_DIR/metrics.json`` has the final mIoU and each stage's;
the last line printed is ``mIoU=<value>``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


EXIT_USAGE, EXIT_DATA, EXIT_INTERRUPTED = 2, 4, 130


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from spml_train.config import recipe_names, register

    register()
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        print("recipes: " + ", ".join(recipe_names()))
        print("example: python -m spml_train recipe=toy_scribbles optim.iterations=100 run.dir=runs/toy")
        print("settings: python -m spml_train recipe=NAME --cfg job   (every key and its value, nothing run)")
        return

    @hydra.main(version_base="1.3", config_path=None, config_name="spml")
    def _main(cfg: DictConfig) -> None:
        from spml_train.config import ConfigError, validate
        from spml_train.pipeline import run
        from weaklabels.errors import WeaklabelsError

        run_dir = Path(cfg.run.dir) if cfg.run.dir else Path(HydraConfig.get().runtime.output_dir)
        # user errors end with one message and an exit code (as weaklabels'), not a traceback
        try:
            validate(cfg)
            metrics = run(cfg, run_dir)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        except (WeaklabelsError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_DATA)
        except KeyboardInterrupt:
            print(f"interrupted; run the same command with run.dir={run_dir} to resume", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        if metrics is not None:  # rank 0 of a data-parallel run, or a single process
            print(f"metrics: {run_dir / 'metrics.json'}")
            print(f"mIoU={metrics['mIoU']:.2f}")

    # run.dir given: Hydra's own files (.hydra/, the text log) go there too, not to ./outputs/
    given = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("run.dir=")]
    if given and given[-1] not in ("", "null", "None", "~") and not any(a.startswith("hydra.run.dir=")
                                                                     for a in sys.argv[1:]):
        sys.argv.append(f"hydra.run.dir={given[-1]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _main()


if __name__ == "__main__":
    main()
