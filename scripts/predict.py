"""Predict segmentation maps for images with a trained model.

    python scripts/predict.py --config C --model_path M --image_path FILE|DIR|LIST.txt
        --save_dir D [--aug_eval --flip_horizontal ...] [--is_slide --crop_size W H --stride W H]

Writes D/pseudo_color_prediction/ (palette PNGs of class ids) and D/added_prediction/
(overlays). Images that cannot be read are reported and skipped; the exit code is then 1.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gcseg import cpu_env  # noqa: E402

cpu_env.configure()

from gcseg import cli  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_common_args(parser)
    parser.add_argument("--model_path", required=True, help="trained weights")
    parser.add_argument("--image_path", required=True,
                        help="an image, a directory of images, or a .txt list of image paths")
    parser.add_argument("--save_dir", default="output/result")
    cli.add_inference_args(parser)
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.engine.predictor import collect_images, predict
    from gcseg.models.weights import load_weights

    cfg = cli.load_config(args, load_pretrained=False)
    cli.select_device(args, cfg)
    images, image_dir = collect_images(args.image_path)
    model = cfg.model
    load_weights(model, args.model_path)
    dataset = cfg.val_dataset
    failed = predict(model, dataset.transforms, images, args.save_dir, palette=dataset.palette,
                     image_dir=image_dir, **cli.inference_settings(args, cfg))
    print(f"predicted {len(images) - len(failed)}/{len(images)} images into {args.save_dir}"
          + (f"; {len(failed)} skipped" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    cli.main_guard(main)
