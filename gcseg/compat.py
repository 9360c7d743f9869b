"""Every difference between Paddle 2.6 and Paddle 3.x that gcseg meets, in one place."""
import paddle

PADDLE_MAJOR = int(paddle.__version__.split(".")[0])
IS_PADDLE_3 = PADDLE_MAJOR >= 3 or paddle.__version__.startswith("0.0.0")
