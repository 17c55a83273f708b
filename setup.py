"""Install mmfunmatch with the OpenMMLab stack pinned to versions that work
together.

See the README's "Supported stack and known limits" and mmfunmatch/compat.py
for why each pin is what it is. The package is mmfunmatch alone; the
experiments in projects/ are used from the checkout through tools/ and need
the ``tools`` extra (``pip install -e '.[tools]'``; ``.[tests]`` includes
it).
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    'torch==2.14.1',
    'torchvision==0.29.1',
    'mmengine==0.10.7',
    'mmcv-lite==2.1.0',  # mmrazor 1.0.0 asserts mmcv<=2.1.0; no compiled ops needed
    'mmpretrain==1.2.0',
    'mmrazor==1.0.0',
    'timm>=1.0,<1.1',
    'setuptools<81',  # mmengine imports pkg_resources
    'joblib',  # imported by mmrazor, not declared by it
    'pytorch-optimizer>=3.0',  # ScalableShampoo
    'safetensors',
    'opencv-python-headless',
]
# projects/funmatch_paper (tools/demo.py, ablation_study.py, ...): the digits
# data set, figures, progress bars.
TOOLS_REQUIRE = ['scikit-learn', 'matplotlib', 'tqdm']
TESTS_REQUIRE = ['pytest', 'pytest-timeout', 'scikit-image'] + TOOLS_REQUIRE

setup(
    name='mmfunmatch',
    version='0.1.0',
    description='Knowledge distillation by function matching for OpenMMLab',
    packages=find_packages(include=['mmfunmatch', 'mmfunmatch.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require={'tools': TOOLS_REQUIRE, 'tests': TESTS_REQUIRE},
)
