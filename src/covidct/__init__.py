"""covidct: COVID-19 pneumonia analysis of chest CT (RADLogics method)."""

from covidct.errors import CovidCTError, InputError
from covidct.volume import Volume

__all__ = ["CovidCTError", "InputError", "Volume", "__version__"]
__version__ = "0.1.0"
