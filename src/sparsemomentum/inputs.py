"""What a model takes and a data set gives, in words a user reads.

Models and data sets name the kind of input they take or give when they register, so that
a pairing that cannot work (LeNet-5 on Shakespeare, a CIFAR network on MNIST) is refused
with one sentence before anything trains or is written, instead of a shape error from
deep inside the first forward pass. A model registered without kinds takes anything.
"""

GREY_28 = "28x28 grey images"
COLOUR_32 = "32x32 colour images"
COLOUR_224 = "224x224 colour images"
CHARACTERS = "character sequences"
