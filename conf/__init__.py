# Makes conf/ importable as kdrun.conf, so Hydra finds it with pkg://kdrun.conf
# in an installed wheel as well as in an editable checkout.
