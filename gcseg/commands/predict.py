"""Predict segmentation maps for images with a trained model.

    python scripts/predict.py --config C --model_path M --image_path FILE|DIR|LIST.txt
        --save_dir D [--aug_pred --flip_horizontal ...] [--is_slide --crop_size W H --stride W H]
        [--custom_color R G B ...] [--device gpu --device_id N]

Writes D/pseudo_color_prediction/ (palette PNGs of class ids) and D/added_prediction/
(overlays). Images that cannot be read are reported and skipped; the run then ends with exit
code 2 and a last line naming the first of them.
Only the config's val_dataset transforms and type are used: the dataset need not be on disk.
A .txt list holds one image per line (the first field), relative to the list's folder; outputs
keep each image's path below the deepest folder holding them all (same names do not collide).
"""
import argparse

from gcseg import cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.config_parser(__doc__)
    parser.add_argument("--model_path", required=True, help="trained weights")
    parser.add_argument("--image_path", required=True,
                        help="an image, a directory of images, or a .txt list of image paths "
                             "(relative to the list's folder)")
    parser.add_argument("--save_dir", default="output/result")
    parser.add_argument("--custom_color", nargs="+", type=int, default=None, metavar="VALUE",
                        help="colours of classes 0, 1, ... as R G B values, e.g. 255 0 0 0 255 0 "
                             "(default: the dataset's palette)")
    parser.add_argument("--device_id", type=int, default=None,
                        help="which device of --device's kind (gpu N), as --device gpu:N")
    cli.add_inference_args(parser, aug_alias="aug_pred")
    return parser


def main() -> int:
    args = get_args_parser().parse_args()
    from gcseg.engine.predict import predict_from_config
    from gcseg.errors import DataError

    cfg = cli.config_on_device(args, load_pretrained=False)
    total, failed = predict_from_config(cfg, args.model_path, args.image_path, args.save_dir,
                                        cli.inference_settings(args, cfg),
                                        custom_color=args.custom_color)
    print(f"predicted {total - len(failed)}/{total} images into {args.save_dir}"
          + (f"; {len(failed)} skipped" if failed else ""))
    if failed:
        raise DataError(f"{len(failed)} of {total} images could not be predicted and were "
                        f"skipped; the first: {failed[0][1]}")
    return 0


def run() -> None:
    """Entry point of gcseg-predict and scripts/predict.py."""
    cli.run(main)
