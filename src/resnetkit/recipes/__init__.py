"""Training recipes shipped with resnetkit, addressable by name: ``--recipe cifar10_resnet20_fast``."""
