"""Compare the pixel data of two native DICOM files with numpy (independent of our decoder).

usage: compare_pixels.py A B  -> {"same_shape": bool, "max_diff": float, "mean_diff": float}
"""
import json
import sys

import numpy as np
from pydicom import dcmread

a = dcmread(sys.argv[1]).pixel_array.astype(np.float64)
b = dcmread(sys.argv[2]).pixel_array.astype(np.float64)
same = a.shape == b.shape
diff = np.abs(a - b) if same else np.array([np.inf])
print(json.dumps({"same_shape": same, "max_diff": float(diff.max()), "mean_diff": float(diff.mean())}))
