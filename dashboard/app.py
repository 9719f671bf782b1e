"""Entry point of the saliency dashboard: page config and navigation, nothing else.

Run with:  streamlit run dashboard/app.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# The OpenMP wait policy and thread count are engines' settings (ENGINES_OMP_WAIT_POLICY,
# ENGINES_THREADS; engines/core/runtime.py), applied when the first page imports engines.

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # works when started from any folder
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402
from dashboard.selection import sidebar  # noqa: E402

st.set_page_config(page_title="Saliency explorer", page_icon=":material/image_search:", layout="wide")

PAGES = ROOT / "dashboard" / "app_pages"
pages = [
    st.Page(str(PAGES / "explore.py"), title="Explore", icon=":material/image_search:", default=True),
    st.Page(str(PAGES / "occlusion.py"), title="Occlusion, live", icon=":material/hide_source:"),
    st.Page(str(PAGES / "probe.py"), title="Probe the nonlinearity", icon=":material/show_chart:"),
    st.Page(str(PAGES / "evaluate.py"), title="Evaluate", icon=":material/balance:"),
    st.Page(str(PAGES / "dataset.py"), title="Data set", icon=":material/dataset:"),
    st.Page(str(PAGES / "learn.py"), title="Learn", icon=":material/school:"),
]
navigation = st.navigation(pages)
st.session_state[state.SELECTION] = sidebar()  # here, so its widgets keep their values across pages
navigation.run()
