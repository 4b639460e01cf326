"""Policy families. Importing this package registers every built-in family."""

from robopolicy.policies.base import Policy, PolicyConfig  # noqa: F401
from robopolicy.policies import diffusion  # noqa: F401
from robopolicy.policies import streaming_diffusion  # noqa: F401
from robopolicy.policies import discrete_diffusion  # noqa: F401
from robopolicy.policies import ebt  # noqa: F401
from robopolicy.policies import pad  # noqa: F401
