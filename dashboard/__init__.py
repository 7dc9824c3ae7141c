"""The Streamlit dashboard (see its issue); the results it reads are plain files under results/."""
