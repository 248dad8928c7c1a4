"""The audit's thresholds: defaults chosen on copies of real images, each overridable.

Every value here was chosen with ``benchmarks/bench_audit.py``: real photographs and
Fashion-MNIST items with copies made of them (exact, re-encoded JPEG, resized, cropped
4%, brightened, blurred), look-alikes that are not copies, foreign images and wrong
labels. summary.json records the values a run used; ``--threshold NAME=VALUE`` changes
one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from imgkit.errors import BadInputError


@dataclass(frozen=True)
class Thresholds:
    """What makes a finding.

    Attributes:
        neighbours: nearest neighbours looked at per image (embedding search).
        candidate_cosine: embedding cosine similarity from which a neighbour is checked
            as a possible copy.
        candidate_hamming: perceptual-hash bits (of 64) that may differ for a pair with
            a shared hash band to be checked.
        hash_candidates: hash pairs kept per image (its closest), so the check's cost
            per image does not grow with a data set's look-alikes.
        max_mismatch: share of pixels that may disagree once one image is aligned onto
            the other (ECC, or ORB + RANSAC) for the pair to be a near duplicate.
        orb_cosine: embedding cosine from which a pair ECC cannot align is tried with
            ORB key points on the full images (larger crops and shifts).
        min_overlap: share of the image the alignment must keep in view (a crop of 4%
            a side keeps about 85%).
        constant_std: grey-level standard deviation (0-255) below which an image is
            constant.
        blank_fraction: share of pixels within 8 grey levels of the median above which
            an image is near blank.
        noise_correlation: correlation of neighbouring pixels below which an image is
            noise (photos: above 0.8).
        blur_z: robust z-score (log sharpness, against the data set) below minus this
            an image is extremely blurred.
        outlier_z: robust z-score of an image's embedding distance to its class centre
            or to its nearest neighbours above which it is unlike the rest.
        imbalance_ratio: a class with fewer images than this share of the median class
            count is reported.
        label_margin: probability of the likely class minus that of the given label
            from which a confidently-off label is reported.
    """

    neighbours: int = 8
    candidate_cosine: float = 0.85
    candidate_hamming: int = 12
    hash_candidates: int = 8
    max_mismatch: float = 0.2
    orb_cosine: float = 0.9
    min_overlap: float = 0.6
    constant_std: float = 2.0
    blank_fraction: float = 0.98
    noise_correlation: float = 0.3
    blur_z: float = 4.0
    outlier_z: float = 3.5
    imbalance_ratio: float = 0.2
    label_margin: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, overrides: dict[str, float]) -> Thresholds:
        """These thresholds with ``overrides`` (name -> value) applied.

        Raises:
            BadInputError: an unknown name, or a count that is not a whole number.
        """
        kinds = {f.name: f.type for f in fields(self)}
        values = self.to_dict()
        for name, value in overrides.items():
            if name not in kinds:
                raise BadInputError(
                    f"--threshold {name}: no such threshold (known: {', '.join(sorted(kinds))})"
                )
            if kinds[name] in (int, "int"):
                if float(value) != int(value) or value < 1:
                    raise BadInputError(f"--threshold {name}={value}: needs a whole number >= 1")
                value = int(value)
            values[name] = value
        return Thresholds(**values)
